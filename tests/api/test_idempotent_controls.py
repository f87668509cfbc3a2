"""Controls accept Idempotency-Key (SPEC C.5.9): a retry with the same key and body answers the
first response with `Idempotent-Replayed: true` and appends nothing; another body → 409."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from app.service import Service
from app.store.database import Database
from tests.api.conftest import BASE, event_count, job_events, lifecycle_manifest, run, submit


async def _post(client: httpx.AsyncClient, path: str, key: str | None, body: Any = None) -> httpx.Response:
    headers = {} if key is None else {"Idempotency-Key": key}
    return await client.post(f"{BASE}/{path}", json=body, headers=headers)


async def _running(client: httpx.AsyncClient, db: Database, service: Service) -> str:
    job_id = await submit(client, lifecycle_manifest(sink_config={"complete_after": 10}))
    await run(db, service, job_id)
    return job_id


async def test_a_retried_pause_and_resume_answer_the_first_and_append_nothing(
    client: httpx.AsyncClient, db: Database, service: Service
) -> None:
    job_id = await _running(client, db, service)
    first = await _post(client, f"jobs/{job_id}/pause", "p-1")
    assert first.status_code == 200 and "Idempotent-Replayed" not in first.headers
    count = await event_count(db)
    again = await _post(client, f"jobs/{job_id}/pause", "p-1")
    assert again.status_code == 200, again.text  # without the key this is a 409: not running
    assert again.json() == first.json() == {"status": "paused", "job_id": job_id}
    assert again.headers["Idempotent-Replayed"] == "true"
    assert await event_count(db) == count
    unkeyed = await _post(client, f"jobs/{job_id}/pause", None)
    assert unkeyed.status_code == 409
    resumed = await _post(client, f"jobs/{job_id}/resume", "r-1")
    assert resumed.status_code == 200
    assert (await _post(client, f"jobs/{job_id}/resume", "r-1")).headers["Idempotent-Replayed"] == "true"
    # The same key for another control of the same job is another request: 409, nothing appended.
    count = await event_count(db)
    reused = await _post(client, f"jobs/{job_id}/cancel", "p-1")
    assert reused.status_code == 409
    assert reused.json() == {"error": "Idempotency-Key p-1 was already used with a different request body"}
    assert await event_count(db) == count
    assert [e["type"] for e in await job_events(client, job_id)].count("job_paused") == 1


async def test_a_retried_message_is_delivered_once_with_its_first_message_id(
    client: httpx.AsyncClient, db: Database, service: Service
) -> None:
    job_id = await _running(client, db, service)
    body = {"agent_id": "sink", "message": {"type": "manual_result", "payload": {"text": "ok"}}}
    first = await _post(client, f"jobs/{job_id}/messages", "m-1", body)
    assert first.status_code == 202
    again = await _post(client, f"jobs/{job_id}/messages", "m-1", body)
    assert again.status_code == 202 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    other = await _post(client, f"jobs/{job_id}/messages", "m-1", {**body, "agent_id": "root"})
    assert other.status_code == 409
    external = [
        e for e in await job_events(client, job_id)
        if e["type"] == "message_delivered" and e["payload"]["route"] == "external"
    ]
    assert [e["payload"]["message"]["envelope"]["message_id"] for e in external] == [first.json()["message_id"]]
    # A key is scoped to its job: the same key delivers to another job.
    second_job = await _running(client, db, service)
    assert (await _post(client, f"jobs/{second_job}/messages", "m-1", body)).status_code == 202
    # After the job ended, the retry still answers what the first call did.
    assert (await _post(client, f"jobs/{job_id}/cancel", "c-1")).status_code == 200
    late = await _post(client, f"jobs/{job_id}/messages", "m-1", body)
    assert late.status_code == 202 and late.json() == first.json()
    assert (await _post(client, f"jobs/{job_id}/cancel", "c-1")).headers["Idempotent-Replayed"] == "true"


async def test_a_retried_cleanup_deletes_and_audits_each_job_once(
    client: httpx.AsyncClient, db: Database, service: Service
) -> None:
    ended = [await _running(client, db, service) for _ in range(2)]
    for job_id in ended:
        assert (await _post(client, f"jobs/{job_id}/cancel", None)).status_code == 200
    first = await _post(client, "jobs/cleanup", "clean-1")
    assert first.status_code == 200 and sorted(first.json()["deleted_jobs"]) == sorted(ended)
    count = await event_count(db)
    again = await _post(client, "jobs/cleanup", "clean-1")
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert await event_count(db) == count  # no second jobs_cleaned
    assert (await _post(client, "jobs/cleanup?all=true", "clean-1")).status_code == 409


@pytest.mark.parametrize("key", [b"", b"a b", "é".encode(), b"x" * 256])
async def test_a_bad_key_is_400_and_changes_nothing(
    client: httpx.AsyncClient, db: Database, service: Service, key: bytes
) -> None:
    job_id = await _running(client, db, service)
    count = await event_count(db)
    for path in (f"jobs/{job_id}/pause", f"jobs/{job_id}/cancel", "jobs/cleanup"):
        response = await client.post(f"{BASE}/{path}", headers={"Idempotency-Key": key})
        assert response.status_code == 400, (path, response.text)
        assert response.json() == {"error": "Idempotency-Key must be 1 to 255 visible ASCII characters"}
    assert await event_count(db) == count
