"""The error envelope everywhere: authentication, unknown routes, wrong methods, body rules, 500s,
and the OpenAPI document (SPEC §2.1, §2.19, Appendix A, Appendix B.3–B.4)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from app.config import Settings
from app.store import read_model
from app.store.database import Database
from tests.api.conftest import BASE, ClientFactory, event_count, lifecycle_manifest, submit

TOKEN = "t0ken-with-enough-entropy"
JOB = "x-1700000000000-000000000000"
ROUTES = [
    ("GET", "/api/v1/health/ready"),
    ("GET", "/api/v1/system/summary"),
    ("GET", "/api/v1/nodes"),
    ("POST", "/api/v1/jobs"),
    ("GET", "/api/v1/jobs"),
    ("POST", "/api/v1/jobs/cleanup"),
    ("GET", f"/api/v1/jobs/{JOB}"),
    ("POST", f"/api/v1/jobs/{JOB}/cancel"),
    ("POST", f"/api/v1/jobs/{JOB}/pause"),
    ("POST", f"/api/v1/jobs/{JOB}/resume"),
    ("POST", f"/api/v1/jobs/{JOB}/messages"),
    ("GET", f"/api/v1/jobs/{JOB}/events"),
    ("GET", "/api/v1/events"),
    ("GET", "/api/v1/bundles"),
    ("GET", "/api/v1/bundles/demo"),
    ("POST", "/api/v1/bundles/demo/reload"),
    ("GET", "/api/v1/schema/openapi.json"),
    ("GET", "/api/v1/nowhere"),
    ("GET", "/api/v1/jobs/cleanup"),
    ("DELETE", "/api/v1/jobs"),
    ("POST", "/api/v1/health"),
    ("OPTIONS", "/api/v1/jobs"),
]


@pytest.fixture
async def secured(make_client: ClientFactory) -> httpx.AsyncClient:
    return await make_client(Settings(api_token=TOKEN))


@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_every_route_but_health_requires_the_token(
    secured: httpx.AsyncClient, db: Database, method: str, path: str
) -> None:
    before = await event_count(db)
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": TOKEN},
        {"Authorization": f"Basic {TOKEN}"},
    ):
        response = await secured.request(method, path, headers=headers, json=lifecycle_manifest())
        assert response.status_code == 401, (headers, response.text)
        assert response.json() == {"error": "missing or invalid bearer token"}
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.headers["content-type"].startswith("application/json")
    assert await event_count(db) == before


async def test_health_needs_no_token_and_a_valid_token_passes(secured: httpx.AsyncClient) -> None:
    assert (await secured.get(f"{BASE}/health")).json() == {"status": "ok"}
    ok = {"Authorization": f"Bearer {TOKEN}"}
    assert (await secured.get(f"{BASE}/jobs", headers=ok)).status_code == 200
    assert (await secured.get(f"{BASE}/health/ready", headers=ok)).status_code == 200
    assert (await secured.get(f"{BASE}/nowhere", headers=ok)).status_code == 404
    response = await secured.post(f"{BASE}/jobs", json=lifecycle_manifest(), headers=ok)
    assert response.status_code == 201


async def test_unknown_route_is_a_json_404(client: httpx.AsyncClient) -> None:
    for path in ("/nowhere", "/api/v2/jobs", f"{BASE}/jobs/{JOB}/nothing", f"{BASE}/bundles/a/b/c"):
        response = await client.get(path)
        assert response.status_code == 404
        assert response.json() == {"error": "Not Found"}
        assert response.headers["content-type"].startswith("application/json")


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", "/jobs/cleanup", "POST"),
        ("DELETE", "/jobs", "GET, POST"),
        ("PUT", f"/jobs/{JOB}", "GET"),
        ("GET", f"/jobs/{JOB}/cancel", "POST"),
        ("POST", "/health", "GET"),
        ("OPTIONS", "/jobs", "GET, POST"),
        ("POST", "/events", "GET"),
        ("DELETE", "/bundles/demo", "GET"),
    ],
)
async def test_wrong_method_is_a_json_405_with_allow(
    client: httpx.AsyncClient, method: str, path: str, allow: str
) -> None:
    response = await client.request(method, BASE + path)
    assert response.status_code == 405
    assert response.json() == {"error": "Method Not Allowed"}
    assert response.headers["allow"] == allow


# ------------------------------------------------------------------------------------ bodies


@pytest.fixture
async def small(make_client: ClientFactory) -> httpx.AsyncClient:
    return await make_client(Settings(max_body_bytes=64))


async def test_declared_content_length_over_the_limit_is_413(small: httpx.AsyncClient, db: Database) -> None:
    for path in ("/jobs", f"/jobs/{JOB}/messages"):
        response = await small.post(
            BASE + path, content=b"x" * 65, headers={"content-type": "application/json"}
        )
        assert response.status_code == 413
        assert response.json() == {"error": "request body exceeds the limit of 64 bytes"}
    assert await event_count(db) == 0


async def test_streamed_body_over_the_limit_is_413(small: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"          "

    response = await small.post(
        f"{BASE}/jobs", content=chunks(), headers={"content-type": "application/json"}
    )
    assert "content-length" not in response.request.headers
    assert response.status_code == 413
    assert response.json() == {"error": "request body exceeds the limit of 64 bytes"}


async def test_body_at_the_limit_is_read(small: httpx.AsyncClient) -> None:
    body = b'{"graph": {}}' + b" " * (64 - 13)
    response = await small.post(f"{BASE}/jobs", content=body)
    assert response.status_code == 400
    assert response.json()["error"] == "Manifest validation failed"


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/xml", "application/jsonx", "multipart/form-data"]
)
async def test_unsupported_content_type_is_415(client: httpx.AsyncClient, content_type: str) -> None:
    for path in ("/jobs", f"/jobs/{JOB}/messages"):
        response = await client.post(BASE + path, content=b'{"a": 1}', headers={"content-type": content_type})
        assert response.status_code == 415
        assert response.json() == {
            "error": f'unsupported content type "{content_type}"; expected application/json'
        }


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON",
        "application/vnd.mn+json",
    ],
)
async def test_json_content_types_are_accepted(client: httpx.AsyncClient, content_type: str | None) -> None:
    headers = {} if content_type is None else {"content-type": content_type}
    response = await client.post(f"{BASE}/jobs", content=b'{"graph": {}}', headers=headers)
    assert response.status_code == 400
    assert response.json()["error"] == "Manifest validation failed"


async def test_content_type_is_not_checked_for_an_empty_body(client: httpx.AsyncClient) -> None:
    response = await client.post(f"{BASE}/jobs", content=b"  \n", headers={"content-type": "text/plain"})
    assert response.status_code == 400
    assert response.json() == {"error": "Empty JSON payload"}


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"{", "invalid JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
        (
            b"{'a': 1}",
            "invalid JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
        ),
        (b'{"a": 1} x', "invalid JSON: Extra data: line 1 column 10 (char 9)"),
        (b'{"a": NaN}', "invalid JSON: NaN is not a valid JSON value"),
        (b'{"a": 1e400}', "invalid JSON: number out of range: 1e400"),
        (
            b"\xff\xfe{}",
            "invalid JSON: 'utf-8' codec can't decode byte 0xff in position 0: invalid start byte",
        ),
        (b'{"a": "\\u0000"}', "invalid JSON: NUL characters (\\u0000) are not supported"),
        (b'{"a\\u0000": 1}', "invalid JSON: NUL characters (\\u0000) are not supported"),
        (b'{"a": "x\x00"}', "invalid JSON: NUL characters (\\u0000) are not supported"),
        (b'{"a": "\\ud800"}', "invalid JSON: unpaired UTF-16 surrogates are not supported"),
        (b"[1]", "request body must be a JSON object"),
        (b'"text"', "request body must be a JSON object"),
        (b"null", "request body must be a JSON object"),
    ],
)
async def test_invalid_json_bodies(client: httpx.AsyncClient, db: Database, body: bytes, error: str) -> None:
    for path in ("/jobs", f"/jobs/{JOB}/messages"):
        response = await client.post(BASE + path, content=body, headers={"content-type": "application/json"})
        assert response.status_code == 400
        assert response.json() == {"error": error}
    assert await event_count(db) == 0


def _nested(depth: int) -> bytes:
    return b'{"a": ' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"


async def test_nesting_limit(client: httpx.AsyncClient) -> None:
    deep = await client.post(f"{BASE}/jobs", content=_nested(513))
    assert deep.status_code == 400
    assert deep.json() == {"error": "invalid JSON: nesting deeper than 512 levels"}
    ok = await client.post(f"{BASE}/jobs", content=_nested(512))
    assert ok.status_code == 400
    assert ok.json()["error"] == "Manifest validation failed"


async def test_100k_levels_of_nesting_do_not_crash(client: httpx.AsyncClient) -> None:
    for body in (b"[" * 100_000 + b"]" * 100_000, b'{"a": ' + b"[" * 100_000, b'{"a":' * 100_000):
        response = await client.post(f"{BASE}/jobs", content=body)
        assert response.status_code == 400
        assert response.json() == {"error": "invalid JSON: nesting deeper than 512 levels"}
    assert (await client.get(f"{BASE}/health")).status_code == 200


async def test_unexpected_failure_is_a_500_without_details(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("secret internals at /srv/app.py line 12")

    monkeypatch.setattr(read_model, "list_jobs", broken)
    response = await client.get(f"{BASE}/jobs")
    assert response.status_code == 500
    assert response.json() == {"error": "internal server error"}
    assert "secret" not in response.text
    assert any("secret internals" in str(r.exc_info[1]) for r in caplog.records if r.exc_info)


async def test_openapi_documents_every_status(client: httpx.AsyncClient) -> None:
    response = await client.get(f"{BASE}/schema/openapi.json")
    assert response.status_code == 200
    doc = response.json()
    assert doc["openapi"].startswith("3.1")
    expected = {
        ("get", "/api/v1/health"): {"200"},
        ("get", "/api/v1/health/ready"): {"200", "503"},
        ("get", "/api/v1/system/summary"): {"200"},
        ("get", "/api/v1/nodes"): {"200"},
        ("post", "/api/v1/jobs"): {"200", "201", "400", "404", "409", "413", "415"},
        ("get", "/api/v1/jobs"): {"200", "400"},
        ("post", "/api/v1/jobs/cleanup"): {"200", "400", "405"},
        ("get", "/api/v1/jobs/{job_id}"): {"200", "404"},
        ("post", "/api/v1/jobs/{job_id}/cancel"): {"200", "404", "409"},
        ("post", "/api/v1/jobs/{job_id}/pause"): {"200", "404", "409"},
        ("post", "/api/v1/jobs/{job_id}/resume"): {"200", "404", "409"},
        ("post", "/api/v1/jobs/{job_id}/messages"): {"202", "400", "404", "409", "413", "415"},
        ("get", "/api/v1/jobs/{job_id}/events"): {"200", "400", "404"},
        ("get", "/api/v1/events"): {"200", "400"},
        ("get", "/api/v1/bundles"): {"200"},
        ("get", "/api/v1/bundles/{bundle_id}"): {"200", "404"},
        ("post", "/api/v1/bundles/{bundle_id}/reload"): {"200", "404", "422"},
    }
    seen: set[str] = set()
    for (method, path), statuses in expected.items():
        operation = doc["paths"][path][method]
        documented = set(operation["responses"])
        common = {"500"} if path == "/api/v1/health" else {"401", "500", "503"}
        assert statuses | common <= documented, (method, path, documented)
        seen |= documented
        assert operation["operationId"]
    assert {"200", "201", "202", "400", "401", "404", "405", "409", "413", "415", "422", "500", "503"} <= seen
    summary = doc["components"]["schemas"]["JobSummary"]["properties"]
    assert "live?" in summary


async def test_a_rejected_submission_writes_nothing(client: httpx.AsyncClient, db: Database) -> None:
    await submit(client, lifecycle_manifest(), **{"Idempotency-Key": "k"})
    before = await event_count(db)
    bad = [
        (b"", {}),
        (b"{}", {}),
        (b"[1]", {}),
        (b'{"graph": {}}', {}),
        (b'{"_bundle_path": "/tmp/x"}', {}),
        (b'{"bundle_id": "missing"}', {}),
        (b'{"graph_id": "g"}', {"Idempotency-Key": "k"}),
        (b'{"a": 1}', {"content-type": "text/plain"}),
    ]
    for body, headers in bad:
        response = await client.post(f"{BASE}/jobs", content=body, headers=headers)
        assert 400 <= response.status_code < 500
    assert await event_count(db) == before


async def test_odd_inputs_never_cause_a_500(client: httpx.AsyncClient) -> None:
    job_id = await submit(client, lifecycle_manifest())
    huge = "9" * 30
    cursor = base64.urlsafe_b64encode(b'["2026-01-01T00:00:00.000Z", "a\\u0000"]').decode()
    cases = [
        ("GET", f"/jobs/{job_id}/events?after={huge}", 200),
        ("GET", f"/jobs/{job_id}/events?after={huge}&limit=5", 200),
        ("GET", f"/jobs/{job_id}/events?after=3000000000", 200),
        ("GET", f"/events?after={huge}", 200),
        ("GET", f"/jobs?limit={huge}", 400),
        ("GET", "/jobs?graph_id=%00", 200),
        ("GET", f"/jobs?cursor={cursor}", 400),
        ("GET", "/jobs/%00", 404),
        ("POST", "/jobs/a%00b/cancel", 404),
        ("GET", "/bundles/%00", 404),
        ("POST", f"/jobs/cleanup?older_than={huge}", 200),
        ("GET", "/jobs/" + "x" * 5000, 404),
    ]
    for method, path, status in cases:
        response = await client.request(method, BASE + path)
        assert response.status_code == status, (path, response.text)
        assert response.headers["content-type"].startswith("application/json")
    ndjson = await client.get(
        f"{BASE}/jobs/{job_id}/events?after={huge}", headers={"accept": "application/x-ndjson"}
    )
    assert ndjson.status_code == 200 and ndjson.text == ""
    sse = await client.get(f"{BASE}/events?after={huge}", headers={"accept": "text/event-stream"})
    assert sse.status_code == 200 and sse.text == ""
