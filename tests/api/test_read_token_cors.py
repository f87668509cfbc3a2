"""The read-only token (Appendix C.4.3) and CORS (C.4.4) in the order of C.5.6–C.5.7, on both databases."""

from __future__ import annotations

import httpx
import pytest

from app.config import ConfigError, Settings
from app.domain.job import PauseJob
from app.service import Service
from app.store.database import Database
from tests.api.conftest import BASE, ClientFactory, event_count, lifecycle_manifest, run

TOKEN = "main-token-4c1e0a"
READ = "read-token-9b77d2"
ORIGIN = "https://console.example.org"
OTHER = "https://evil.example.net"
FULL = {"Authorization": f"Bearer {TOKEN}"}
READER = {"Authorization": f"Bearer {READ}"}
JOB = "x-1700000000000-000000000000"
WRITES = [
    ("POST", "/jobs"),
    ("POST", "/jobs/cleanup"),
    ("POST", f"/jobs/{JOB}/cancel"),
    ("POST", f"/jobs/{JOB}/pause"),
    ("POST", f"/jobs/{JOB}/resume"),
    ("POST", f"/jobs/{JOB}/messages"),
    ("POST", "/bundles/demo/reload"),
    ("POST", "/nowhere"),
    ("DELETE", "/jobs"),
    ("PUT", f"/jobs/{JOB}"),
]


@pytest.fixture
async def secured(make_client: ClientFactory) -> httpx.AsyncClient:
    settings = Settings(api_token=TOKEN, api_read_token=READ, cors_origins=(ORIGIN,))
    return await make_client(settings)


async def test_the_read_token_lists_details_and_follows(
    secured: httpx.AsyncClient, db: Database, service: Service
) -> None:
    submitted = await secured.post(f"{BASE}/jobs", json=lifecycle_manifest(), headers=FULL)
    assert submitted.status_code == 201
    job_id = submitted.json()["job_id"]
    await run(db, service, job_id)
    await service.execute(job_id, PauseJob())
    assert (await secured.get(f"{BASE}/jobs", headers=READER)).json()["data"][0]["job_id"] == job_id
    assert (await secured.get(f"{BASE}/jobs/{job_id}", headers=READER)).json()["job"]["status"] == "paused"
    assert (await secured.head(f"{BASE}/jobs", headers=READER)).status_code != 403
    assert (await secured.get(f"{BASE}/events", headers=READER)).json()["data"][0]["job_id"] == job_id
    assert (await secured.post(f"{BASE}/jobs/{job_id}/cancel", headers=READER)).status_code == 403
    assert (await secured.post(f"{BASE}/jobs/{job_id}/cancel", headers=FULL)).status_code == 200
    # A follow of a terminal job ends after the backfill, with the job_cancelled event last.
    followed = await secured.get(
        f"{BASE}/jobs/{job_id}/events", params={"follow": "true"}, headers={**READER, "Accept": "application/x-ndjson"}
    )
    assert followed.status_code == 200
    lines = [line for line in followed.text.splitlines() if line]
    assert '"type":"job_cancelled"' in lines[-1].replace(" ", "")
    assert (await secured.get(f"{BASE}/schema/openapi.json", headers=READER)).status_code == 200


@pytest.mark.parametrize(("method", "path"), WRITES)
async def test_the_read_token_gets_403_on_every_write(
    secured: httpx.AsyncClient, db: Database, method: str, path: str
) -> None:
    before = await event_count(db)
    response = await secured.request(method, BASE + path, json=lifecycle_manifest(), headers=READER)
    assert response.status_code == 403, response.text
    assert response.json() == {"error": "this token may only read"}
    assert await event_count(db) == before
    # Without any token it is 401 first; with the main token the request reaches the routes.
    assert (await secured.request(method, BASE + path, json=lifecycle_manifest())).status_code == 401
    assert (await secured.request(method, BASE + path, json=lifecycle_manifest(), headers=FULL)).status_code != 403


async def test_a_preflight_from_an_allowed_origin_needs_no_token(secured: httpx.AsyncClient) -> None:
    response = await secured.options(
        f"{BASE}/jobs",
        headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization,content-type"},
    )
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert response.headers["vary"] == "Origin"
    assert response.headers["access-control-allow-methods"] == "GET, POST, OPTIONS"
    assert response.headers["access-control-allow-headers"] == (
        "Authorization, Content-Type, Idempotency-Key, Last-Event-ID, X-Request-ID"
    )
    assert response.headers["access-control-max-age"] == "600"


async def test_a_preflight_from_another_origin_gets_no_cors_headers(secured: httpx.AsyncClient) -> None:
    response = await secured.options(
        f"{BASE}/jobs", headers={"Origin": OTHER, "Access-Control-Request-Method": "POST"}
    )
    assert response.status_code == 401
    assert not [name for name in response.headers if name.startswith("access-control-")]
    plain = await secured.get(f"{BASE}/jobs", headers={**FULL, "Origin": OTHER})
    assert plain.status_code == 200
    assert not [name for name in plain.headers if name.startswith("access-control-")]


async def test_every_answer_to_an_allowed_origin_carries_cors_headers(secured: httpx.AsyncClient) -> None:
    expose = "Location, Idempotent-Replayed, X-Request-ID"
    cases = [
        await secured.get(f"{BASE}/jobs", headers={"Origin": ORIGIN}),  # 401
        await secured.post(f"{BASE}/jobs", json={}, headers={**READER, "Origin": ORIGIN}),  # 403
        await secured.post(f"{BASE}/jobs", json={}, headers={**FULL, "Origin": ORIGIN}),  # 400
        await secured.post(f"{BASE}/jobs", json=lifecycle_manifest(), headers={**FULL, "Origin": ORIGIN}),
        await secured.get(
            f"{BASE}/events", headers={**FULL, "Origin": ORIGIN, "Accept": "text/event-stream"}
        ),
    ]
    assert [case.status_code for case in cases] == [401, 403, 400, 201, 200]
    for response in cases:
        assert response.headers["access-control-allow-origin"] == ORIGIN
        assert response.headers["vary"] == "Origin"
        assert response.headers["access-control-expose-headers"] == expose


async def test_without_cors_origins_options_is_not_answered(make_client: ClientFactory) -> None:
    client = await make_client(Settings())
    response = await client.options(f"{BASE}/jobs", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "GET"})
    assert response.status_code == 405
    assert "access-control-allow-origin" not in response.headers


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MIRROR_NEURON_API_READ_TOKEN": READ},
         "MIRROR_NEURON_API_READ_TOKEN is set without MIRROR_NEURON_API_TOKEN"),
        ({"MIRROR_NEURON_API_TOKEN": TOKEN, "MIRROR_NEURON_API_READ_TOKEN": TOKEN},
         "MIRROR_NEURON_API_READ_TOKEN must differ from MIRROR_NEURON_API_TOKEN"),
        ({"MIRROR_NEURON_CORS_ORIGINS": "*"}, 'MIRROR_NEURON_CORS_ORIGINS must list origins exactly; "*"'),
        ({"MIRROR_NEURON_CORS_ORIGINS": f"{ORIGIN}, *"}, "MIRROR_NEURON_CORS_ORIGINS"),
        ({"MIRROR_NEURON_CORS_ORIGINS": f"{ORIGIN}/"}, "is not an origin"),
        ({"MIRROR_NEURON_CORS_ORIGINS": "console.example.org"}, "is not an origin"),
    ],
)
def test_settings_that_refuse_to_start(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("*", r"\*")):
        Settings.from_env(env)


def test_origins_are_read_as_a_list() -> None:
    env = {"MIRROR_NEURON_CORS_ORIGINS": f"{ORIGIN}, http://127.0.0.1:5173 ,"}
    assert Settings.from_env(env).cors_origins == (ORIGIN, "http://127.0.0.1:5173")
    assert Settings.from_env({}).cors_origins == ()
