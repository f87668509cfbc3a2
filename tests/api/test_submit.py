"""`POST /api/v1/jobs` (SPEC §2.7, §9.4, §13.5 Flows D and E)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.domain.canonical import legacy_json, sha256_hex
from app.service import Service
from app.store.database import Database
from tests.api.conftest import (
    BASE,
    event_count,
    job_events,
    lifecycle_manifest,
    register_bundle,
    submit,
    submitted_manifest,
    write_bundle,
)

MANIFEST_ERRORS = [
    "manifest_version is required",
    "graph_id is required",
    "nodes must not be empty",
    "manifest must define at least one entrypoint or one node with role root/root_coordinator",
]
BUNDLE_PATH_ERROR = "_bundle_path /tmp/x was not issued by an upload"


async def test_submit_creates_a_pending_job(client: httpx.AsyncClient) -> None:
    response = await client.post(f"{BASE}/jobs", json=lifecycle_manifest())
    assert response.status_code == 201
    body = response.json()
    job_id = body["job_id"]
    assert body == {"id": job_id, "job_id": job_id, "status": "pending"}
    assert response.headers["location"] == f"/api/v1/jobs/{job_id}"
    assert "idempotent-replayed" not in response.headers
    assert job_id.startswith("pause_resume_test-")
    events = await job_events(client, job_id)
    assert [e["type"] for e in events] == ["job_submitted"]
    payload = events[0]["payload"]
    assert payload["bundle"] is None and payload["idempotency_key"] is None
    assert payload["request_sha256"] == sha256_hex(legacy_json(lifecycle_manifest()))
    assert payload["manifest_ref"] == {
        "graph_id": "pause_resume_test",
        "manifest_version": "1.0",
        "manifest_path": None,
        "job_path": None,
    }
    details = (await client.get(f"{BASE}/jobs/{job_id}")).json()
    assert details["job"]["root_agent_ids"] == ["root"]
    assert details["job"]["status"] == "pending"


async def test_flow_d_validation(client: httpx.AsyncClient, db: Database) -> None:
    cases: list[tuple[bytes, dict[str, str], int, dict[str, Any]]] = [
        (
            b'{"graph": {}, "agents": []}',
            {},
            400,
            {"error": "Manifest validation failed", "errors": MANIFEST_ERRORS},
        ),
        (b"{}", {}, 400, {"error": "Empty JSON payload"}),
        (b"", {}, 400, {"error": "Empty JSON payload"}),
        (b" \r\n\t ", {}, 400, {"error": "Empty JSON payload"}),
        (b"[1]", {}, 400, {"error": "request body must be a JSON object"}),
        (b'{"_bundle_path": "/tmp/x"}', {}, 400, {"error": BUNDLE_PATH_ERROR}),
        (
            b'{"graph_id": "x"}',
            {"content-type": "text/plain"},
            415,
            {"error": 'unsupported content type "text/plain"; expected application/json'},
        ),
    ]
    bad_id = {**lifecycle_manifest(), "graph_id": "bad id"}
    cases.append(
        (
            json.dumps(bad_id).encode(),
            {},
            400,
            {
                "error": "Manifest validation failed",
                "errors": [
                    'graph_id must be a non-empty string of at most 128 characters using only letters, digits, "_", "." and "-"'
                ],
            },
        )
    )
    nodes_object = {**lifecycle_manifest(), "nodes": {}}
    for body, headers, status, expected in cases:
        response = await client.post(f"{BASE}/jobs", content=body, headers=headers)
        assert response.status_code == status, body
        assert response.json() == expected
    response = await client.post(f"{BASE}/jobs", json=nodes_object)
    assert response.status_code == 400
    assert "nodes must be a list" in response.json()["errors"]
    assert await event_count(db) == 0


async def test_flow_e_idempotency(client: httpx.AsyncClient, db: Database) -> None:
    key = {"Idempotency-Key": "order-42"}
    first = await client.post(f"{BASE}/jobs", json=lifecycle_manifest(), headers=key)
    assert first.status_code == 201
    job_id = first.json()["job_id"]
    count = await event_count(db)
    second = await client.post(f"{BASE}/jobs", json=lifecycle_manifest(), headers=key)
    assert second.status_code == 200
    assert second.json() == {"id": job_id, "job_id": job_id, "status": "pending"}
    assert second.headers["idempotent-replayed"] == "true"
    assert second.headers["location"] == f"/api/v1/jobs/{job_id}"
    assert await event_count(db) == count
    other = {**lifecycle_manifest(), "job_name": "different"}
    third = await client.post(f"{BASE}/jobs", json=other, headers=key)
    assert third.status_code == 409
    assert third.json() == {
        "error": "Idempotency-Key order-42 was already used with a different request body"
    }
    assert await event_count(db) == count
    details = (await client.get(f"{BASE}/jobs/{job_id}")).json()
    assert details["job"]["idempotency_key"] == "order-42"


async def test_replay_reports_the_current_status(client: httpx.AsyncClient) -> None:
    key = {"Idempotency-Key": "k1"}
    job_id = await submit(client, lifecycle_manifest(), **key)
    await client.post(f"{BASE}/jobs/{job_id}/cancel")
    replay = await client.post(f"{BASE}/jobs", json=lifecycle_manifest(), headers=key)
    assert replay.status_code == 200
    assert replay.json()["status"] == "cancelled"


async def test_digest_is_of_the_parsed_body(client: httpx.AsyncClient) -> None:
    key = {"Idempotency-Key": "k2", "content-type": "application/json"}
    job_id = await submit(client, lifecycle_manifest(), **key)
    spaced = json.dumps(lifecycle_manifest(), indent=4, sort_keys=True).encode()
    replay = await client.post(f"{BASE}/jobs", content=spaced, headers=key)
    assert replay.status_code == 200
    assert replay.json()["job_id"] == job_id


async def test_key_mismatch_answers_before_validation(client: httpx.AsyncClient) -> None:
    key = {"Idempotency-Key": "k3"}
    await submit(client, lifecycle_manifest(), **key)
    response = await client.post(f"{BASE}/jobs", json={"graph": {}}, headers=key)
    assert response.status_code == 409
    response = await client.post(f"{BASE}/jobs", json={"bundle_id": 5}, headers=key)
    assert response.status_code == 409


@pytest.mark.parametrize("key", ["", "a b", "x" * 256, "tab\there", "caf\u00e9"])
async def test_idempotency_key_must_be_visible_ascii(
    client: httpx.AsyncClient, db: Database, key: str
) -> None:
    response = await client.post(
        f"{BASE}/jobs", json=lifecycle_manifest(), headers=[("Idempotency-Key", key.encode("utf-8"))]
    )
    assert response.status_code == 400
    assert response.json() == {"error": "Idempotency-Key must be 1 to 255 visible ASCII characters"}
    assert await event_count(db) == 0


async def test_idempotency_key_edges_are_accepted(client: httpx.AsyncClient) -> None:
    for key in ("x" * 255, "!", "~a~"):
        response = await client.post(
            f"{BASE}/jobs", json=lifecycle_manifest(), headers={"Idempotency-Key": key}
        )
        assert response.status_code == 201


async def test_bundle_path_is_checked_before_the_key(client: httpx.AsyncClient) -> None:
    response = await client.post(f"{BASE}/jobs", json={"_bundle_path": "/x"}, headers={"Idempotency-Key": ""})
    assert response.json() == {"error": "_bundle_path /x was not issued by an upload"}


async def test_raw_manifest_with_uploads_is_refused(client: httpx.AsyncClient) -> None:
    manifest = {
        "graph_id": "up",
        "manifest_version": "1",
        "nodes": [
            {"node_id": "w", "agent_type": "executor", "role": "root", "config": {"upload_path": "script.sh"}}
        ],
    }
    response = await client.post(f"{BASE}/jobs", json=manifest)
    assert response.status_code == 400
    assert response.json() == {
        "error": "Manifest validation failed",
        "errors": ["node w uploads files but the job has no bundle; submit it with bundle_id"],
    }


# ------------------------------------------------------------------------------------ bundles


def _bundle_manifest(graph_id: str = "demo_bundle", upload: str | None = "run.sh") -> dict[str, Any]:
    config: dict[str, Any] = {"command": ["sh", "run.sh"]}
    if upload is not None:
        config["upload_path"] = upload
    return {
        "graph_id": graph_id,
        "manifest_version": "2.0",
        "job_name": "Demo",
        "nodes": [{"node_id": "worker", "agent_type": "executor", "role": "root", "config": config}],
        "initial_inputs": {"worker": [{"n": 1}]},
    }


async def test_bundle_submission(client: httpx.AsyncClient, service: Service, tmp_path: Path) -> None:
    directory = write_bundle(tmp_path, "demo", _bundle_manifest(), {"run.sh": "echo hi"})
    found = await register_bundle(service, directory)
    response = await client.post(f"{BASE}/jobs", json={"bundle_id": "demo_bundle"})
    assert response.status_code == 201
    job_id = response.json()["job_id"]
    payload = (await job_events(client, job_id))[0]["payload"]
    assert payload["bundle"] == {
        "bundle_id": "demo_bundle",
        "fingerprint": found.fingerprint,
        "path": found.path,
    }
    assert payload["manifest_ref"] == {
        "graph_id": "demo_bundle",
        "manifest_version": "2.0",
        "manifest_path": f"{found.path}/manifest.json",
        "job_path": found.path,
    }
    assert payload["manifest"] == found.manifest
    job = (await client.get(f"{BASE}/jobs/{job_id}")).json()["job"]
    assert job["bundle"] == {"bundle_id": "demo_bundle", "fingerprint": found.fingerprint}
    assert job["job_name"] == "Demo"


async def test_bundle_submission_replaces_initial_inputs(
    client: httpx.AsyncClient, db: Database, service: Service, tmp_path: Path
) -> None:
    await register_bundle(service, write_bundle(tmp_path, "demo", _bundle_manifest(), {"run.sh": "echo"}))
    job_id = await submit(client, {"bundle_id": "demo_bundle", "initial_inputs": [{"n": 7}, {"n": 8}]})
    manifest = await submitted_manifest(db, job_id)
    assert manifest["initial_inputs"] == {"__entrypoints__": [{"n": 7}, {"n": 8}]}
    kept = await submit(client, {"bundle_id": "demo_bundle"})
    assert (await submitted_manifest(db, kept))["initial_inputs"] == {"worker": [{"n": 1}]}


async def test_bundle_submission_errors(
    client: httpx.AsyncClient, db: Database, service: Service, tmp_path: Path
) -> None:
    directory = write_bundle(tmp_path, "demo", _bundle_manifest(), {"run.sh": "echo"})
    await register_bundle(service, directory)
    before = await event_count(db)
    cases: list[tuple[dict[str, Any], int, dict[str, Any]]] = [
        ({"bundle_id": ""}, 400, {"error": "bundle_id must be a non-empty string"}),
        ({"bundle_id": 5}, 400, {"error": "bundle_id must be a non-empty string"}),
        ({"bundle_id": None}, 400, {"error": "bundle_id must be a non-empty string"}),
        (
            {"bundle_id": "demo_bundle", "zeta": 1, "nodes": []},
            400,
            {
                "error": 'unexpected field "nodes" in a bundle submission; only bundle_id and initial_inputs are allowed'
            },
        ),
        ({"bundle_id": "nope"}, 404, {"error": "Bundle nope not found"}),
        (
            {"bundle_id": "demo_bundle", "initial_inputs": 5},
            400,
            {"error": "Manifest validation failed", "errors": ["initial_inputs must be an object or a list"]},
        ),
    ]
    for body, status, expected in cases:
        response = await client.post(f"{BASE}/jobs", json=body)
        assert response.status_code == status, body
        assert response.json() == expected
    (directory / "payloads" / "run.sh").unlink()
    response = await client.post(f"{BASE}/jobs", json={"bundle_id": "demo_bundle"})
    assert response.status_code == 400
    missing = directory.resolve() / "payloads" / "run.sh"
    assert response.json() == {
        "error": "Manifest validation failed",
        "errors": [f"upload source does not exist: {missing}"],
    }
    assert await event_count(db) == before


async def test_concurrent_submits_with_one_key_create_one_job(client: httpx.AsyncClient, db: Database) -> None:
    import asyncio

    key = {"Idempotency-Key": "same-key"}
    answers = await asyncio.gather(
        *(client.post(f"{BASE}/jobs", json=lifecycle_manifest(), headers=key) for _ in range(8))
    )
    assert sorted(a.status_code for a in answers) == [200] * 7 + [201], [a.text for a in answers]
    assert len({a.json()["job_id"] for a in answers}) == 1
    assert await event_count(db) == 1


async def test_an_integer_no_double_equals_is_refused_and_nothing_is_stored(
    client: httpx.AsyncClient, db: Database
) -> None:
    # SPEC C.1.2: JSON numbers are doubles; 9007199254740993 would silently become ...992.
    before = await event_count(db)
    manifest = lifecycle_manifest()
    text = json.dumps(manifest)[:-1] + ', "metadata": {"n": 9007199254740993}}'
    response = await client.post(f"{BASE}/jobs", content=text, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json() == {"error": "invalid JSON: integer out of range: 9007199254740993"}
    assert await event_count(db) == before


async def test_an_exact_large_integer_is_stored_as_its_double_and_digested_as_sent(client: httpx.AsyncClient) -> None:
    # 10000000000000000 is exactly a double: accepted, stored in RFC 8785 form, and the request
    # digest keeps the Appendix B.2 text of the body as sent (SPEC C.1.1).
    manifest = lifecycle_manifest()
    manifest["metadata"] = {"big": 10**16, "ratio": 1.0}
    job_id = await submit(client, manifest)
    raw = (await client.get(f"{BASE}/jobs/{job_id}/events")).text
    assert '"metadata":{"big":10000000000000000,"ratio":1}' in raw
    payload = (await job_events(client, job_id))[0]["payload"]
    assert payload["request_sha256"] == sha256_hex(legacy_json(manifest))
    as_double = {**manifest, "metadata": {"big": 1e16, "ratio": 1.0}}  # json.dumps writes 1e+16 for it
    assert payload["request_sha256"] != sha256_hex(legacy_json(as_double))
