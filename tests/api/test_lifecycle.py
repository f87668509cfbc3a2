"""Cancel, pause, resume and external messages (SPEC §2.10–§2.13, §13.5 Flows A and B)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from app.domain.events import NewEvent
from app.domain.job import CommitStep, Completion, FailBootstrap, RecordAgentEvents
from app.domain.messages import received_payload
from app.service import Service
from app.store import leases
from app.store.database import Database
from tests.api.conftest import (
    BASE,
    INCARNATION,
    NODE,
    TTL_MS,
    admit,
    event_count,
    job_events,
    labels,
    lifecycle_manifest,
    process,
    run,
    submit,
)

UNKNOWN = "nope-1-000000000000"


async def _post(client: httpx.AsyncClient, job_id: str, action: str, body: Any = None) -> httpx.Response:
    if body is None:
        return await client.post(f"{BASE}/jobs/{job_id}/{action}")
    return await client.post(f"{BASE}/jobs/{job_id}/{action}", json=body)


async def _status(client: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    response = await client.get(f"{BASE}/jobs/{job_id}")
    assert response.status_code == 200
    return dict(response.json())


async def _failed_job(client: httpx.AsyncClient, db: Database, service: Service) -> str:
    job_id = await submit(client, lifecycle_manifest("failing"))
    await admit(service, job_id)
    async with db.write() as conn:
        fence = await leases.claim(
            conn, job_id, node=NODE, incarnation=INCARNATION, now_ms=service.clock(), ttl_ms=TTL_MS
        )
    assert fence is not None
    await service.execute(job_id, FailBootstrap(NODE, "job_coordinator", "bootstrap broke"), fence)
    return job_id


async def test_flow_a_pause_message_resume_complete(
    client: httpx.AsyncClient, db: Database, service: Service
) -> None:
    job_id = await submit(client, lifecycle_manifest())
    job = await run(db, service, job_id)
    await process(service, job, "root", job.seeds[0], processed=0)

    paused = await _post(client, job_id, "pause")
    assert paused.status_code == 200
    assert paused.json() == {"status": "paused", "job_id": job_id}
    details = await _status(client, job_id)
    assert details["job"]["status"] == "paused"
    assert details["job"]["status_reason"] == "paused by operator"
    again = await _post(client, job_id, "pause")
    assert again.status_code == 409
    assert again.json() == {"error": f"job {job_id} is not running"}

    message = {
        "agent_id": "sink",
        "message": {"type": "manual_result", "payload": {"text": "approved while paused"}},
    }
    delivered = await _post(client, job_id, "messages", message)
    assert delivered.status_code == 202
    body = delivered.json()
    assert body["job_id"] == job_id and body["agent_id"] == "sink"
    assert isinstance(body["message_id"], str) and len(body["message_id"]) == 14
    details = await _status(client, job_id)
    sink = next(a for a in details["agents"] if a["agent_id"] == "sink")
    assert sink["mailbox_depth"] == 1
    assert sink["status"] == "paused" and sink["paused?"] is True
    assert details["job"]["status"] == "paused"

    resumed = await _post(client, job_id, "resume")
    assert resumed.status_code == 200
    assert resumed.json() == {"status": "resumed", "job_id": job_id}
    assert (await _status(client, job_id))["job"]["status"] == "running"

    events = await job_events(client, job_id)
    external = events[-2]["payload"]["message"]
    received = NewEvent("agent_message_received", received_payload(external), "sink")
    await service.execute(job_id, RecordAgentEvents("sink", (received,)), job.fence)
    output = {
        "messages": [{"text": "approved while paused"}],
        "count": 1,
        "last_message": {"text": "approved while paused"},
    }
    step = CommitStep(
        "sink",
        body["message_id"],
        0,
        {"count": 1},
        (
            NewEvent(
                "aggregator_received",
                {"count": 1, "message_id": body["message_id"], "agent_id": None},
                "sink",
            ),
        ),
        Completion("sink", output),
    )
    await service.execute(job_id, step, job.fence)
    done = await _status(client, job_id)
    assert done["job"]["status"] == "completed"
    assert done["job"]["result"]["output"]["last_message"] == {"text": "approved while paused"}

    events = await job_events(client, job_id)
    assert labels(events) == [
        "job_submitted",
        "job_queued",
        "job_scheduled",
        "message_delivered(root)",
        "job_running",
        "agent_message_received(root)",
        "message_processed(root)",
        "job_paused",
        "message_delivered(sink)",
        "job_resumed",
        "agent_message_received(sink)",
        "aggregator_received(sink)",
        "message_processed(sink)",
        "job_completed(sink)",
    ]
    delivered_event = events[8]
    assert delivered_event["payload"]["route"] == "external"
    assert delivered_event["payload"]["edge_id"] is None
    envelope = delivered_event["payload"]["message"]["envelope"]
    assert envelope["from"] == "external" and envelope["class"] == "command"
    assert envelope["type"] == "manual_result" and envelope["to"] == "sink" and envelope["job_id"] == job_id
    assert envelope["message_id"] == body["message_id"]
    assert delivered_event["payload"]["message"]["body"] == {"text": "approved while paused"}

    assert (await _post(client, job_id, "resume")).json() == {"error": f"job {job_id} is not paused"}
    assert (await _post(client, job_id, "pause")).json() == {"error": f"job {job_id} is not running"}
    cancel = await _post(client, job_id, "cancel")
    assert cancel.status_code == 409
    assert cancel.json() == {"error": f"job {job_id} is already in a terminal state (completed)"}
    late = await _post(client, job_id, "messages", {"agent_id": "sink"})
    assert late.status_code == 409
    assert late.json() == {"error": f"job {job_id} is already in a terminal state (completed)"}


async def test_flow_b_cancel_a_running_job(client: httpx.AsyncClient, db: Database, service: Service) -> None:
    job_id = await submit(client, lifecycle_manifest(sink_config={"complete_after": 10}))
    await run(db, service, job_id)
    listed = (await client.get(f"{BASE}/jobs")).json()["data"]
    assert [j["live?"] for j in listed if j["job_id"] == job_id] == [True]

    ghost = await _post(client, job_id, "messages", {"agent_id": "ghost"})
    assert ghost.status_code == 404
    assert ghost.json() == {"error": f"agent ghost was not found in job {job_id}"}
    assert (await _post(client, job_id, "resume")).json() == {"error": f"job {job_id} is not paused"}

    cancelled = await _post(client, job_id, "cancel")
    assert cancelled.status_code == 200
    assert cancelled.json() == {"status": "cancelled", "job_id": job_id}
    details = await _status(client, job_id)
    assert details["job"]["status"] == "cancelled"
    assert details["job"]["result"] == {"reason": "cancelled by operator"}
    assert details["job"]["status_reason"] == "cancelled by operator"
    assert details["summary"]["live?"] is False
    events = await job_events(client, job_id)
    assert events[-1]["type"] == "job_cancelled"
    assert events[-1]["payload"] == {
        "reason": "cancelled by operator",
        "result": {"reason": "cancelled by operator"},
    }

    count = await event_count(db)
    again = await _post(client, job_id, "cancel")
    assert again.status_code == 200
    assert again.json() == {"status": "cancelled", "job_id": job_id}
    assert await event_count(db) == count
    assert (await _post(client, job_id, "pause")).json() == {"error": f"job {job_id} is not running"}


async def test_unknown_job_is_404_on_every_job_route(client: httpx.AsyncClient) -> None:
    expected = {"error": f"job {UNKNOWN} was not found"}
    responses = [
        await client.get(f"{BASE}/jobs/{UNKNOWN}"),
        await client.get(f"{BASE}/jobs/{UNKNOWN}/events"),
        await client.get(f"{BASE}/jobs/{UNKNOWN}/events", headers={"accept": "text/event-stream"}),
        await client.get(f"{BASE}/jobs/{UNKNOWN}/events", headers={"accept": "application/x-ndjson"}),
        await _post(client, UNKNOWN, "cancel"),
        await _post(client, UNKNOWN, "pause"),
        await _post(client, UNKNOWN, "resume"),
        await _post(client, UNKNOWN, "messages", {"agent_id": "x"}),
        await _post(client, UNKNOWN, "messages", {}),
        await client.post(f"{BASE}/jobs/{UNKNOWN}/messages"),
    ]
    for response in responses:
        assert response.status_code == 404
        assert response.json() == expected
        assert response.headers["content-type"].startswith("application/json")


async def test_cancel_from_every_live_status(
    client: httpx.AsyncClient, db: Database, service: Service
) -> None:
    pending = await submit(client, lifecycle_manifest("c_pending"))
    queued = await submit(client, lifecycle_manifest("c_queued"))
    await admit(service, queued)
    running = await submit(client, lifecycle_manifest("c_running"))
    await run(db, service, running)
    paused = await submit(client, lifecycle_manifest("c_paused"))
    await run(db, service, paused)
    assert (await _post(client, paused, "pause")).status_code == 200
    for job_id, length in ((pending, 2), (queued, 3), (running, 6), (paused, 7)):
        response = await _post(client, job_id, "cancel")
        assert response.status_code == 200
        assert response.json() == {"status": "cancelled", "job_id": job_id}
        events = await job_events(client, job_id)
        assert len(events) == length
        assert events[-1]["type"] == "job_cancelled"
        assert events[-1]["payload"]["reason"] == "cancelled by operator"


async def test_cancel_of_a_failed_job_is_409(
    client: httpx.AsyncClient, db: Database, service: Service
) -> None:
    job_id = await _failed_job(client, db, service)
    count = await event_count(db)
    response = await _post(client, job_id, "cancel")
    assert response.status_code == 409
    assert response.json() == {"error": f"job {job_id} is already in a terminal state (failed)"}
    message = await _post(client, job_id, "messages", {"agent_id": "sink"})
    assert message.json() == {"error": f"job {job_id} is already in a terminal state (failed)"}
    assert await event_count(db) == count


async def test_pause_and_resume_only_from_their_status(
    client: httpx.AsyncClient, db: Database, service: Service
) -> None:
    pending = await submit(client, lifecycle_manifest("p_pending"))
    queued = await submit(client, lifecycle_manifest("p_queued"))
    await admit(service, queued)
    cancelled = await submit(client, lifecycle_manifest("p_cancelled"))
    await _post(client, cancelled, "cancel")
    count = await event_count(db)
    for job_id in (pending, queued, cancelled):
        pause = await _post(client, job_id, "pause")
        assert pause.status_code == 409
        assert pause.json() == {"error": f"job {job_id} is not running"}
        resume = await _post(client, job_id, "resume")
        assert resume.status_code == 409
        assert resume.json() == {"error": f"job {job_id} is not paused"}
    assert await event_count(db) == count
    running = await submit(client, lifecycle_manifest("p_running"))
    await run(db, service, running)
    assert (await _post(client, running, "resume")).json() == {"error": f"job {running} is not paused"}
    assert (await _post(client, running, "pause")).status_code == 200
    assert (await _post(client, running, "resume")).status_code == 200
    events = await job_events(client, running)
    assert [e["type"] for e in events[-2:]] == ["job_paused", "job_resumed"]
    assert events[-2]["payload"] == {"reason": "paused by operator"}
    assert events[-1]["payload"] == {"reason": "resumed by operator"}
    details = await _status(client, running)
    assert details["job"]["status"] == "running" and details["job"]["status_reason"] is None


async def test_messages_only_while_running_or_paused(
    client: httpx.AsyncClient, db: Database, service: Service
) -> None:
    pending = await submit(client, lifecycle_manifest("m_pending"))
    queued = await submit(client, lifecycle_manifest("m_queued"))
    await admit(service, queued)
    for job_id in (pending, queued):
        response = await _post(client, job_id, "messages", {"agent_id": "sink"})
        assert response.status_code == 409
        assert response.json() == {"error": f"job {job_id} is not running"}
    running = await submit(client, lifecycle_manifest("m_running"))
    await run(db, service, running)
    ok = await _post(client, running, "messages", {"agent_id": "sink", "message": {"x": 1}})
    assert ok.status_code == 202
    assert (await _post(client, running, "pause")).status_code == 200
    paused_ok = await _post(client, running, "messages", {"agent_id": "root"})
    assert paused_ok.status_code == 202
    events = await job_events(client, running)
    first, second = events[-3], events[-1]
    assert first["type"] == "message_delivered" and first["agent_id"] == "sink"
    message = first["payload"]["message"]
    assert message["envelope"]["type"] == "command"
    assert message["envelope"]["from"] == "external"
    assert message["envelope"]["class"] == "command"
    assert message["body"] == {"x": 1}
    assert second["payload"]["message"]["body"] == {}
    assert second["payload"]["route"] == "external"
    assert (
        first["payload"]["message"]["envelope"]["correlation_id"]
        != second["payload"]["message"]["envelope"]["correlation_id"]
    )


async def test_message_forms_and_imposed_fields(
    client: httpx.AsyncClient, db: Database, service: Service
) -> None:
    job_id = await submit(client, lifecycle_manifest())
    await run(db, service, job_id)
    spec_form = {
        "envelope": {
            "message_id": "mine",
            "job_id": "other",
            "to": "root",
            "from": "ops",
            "type": "review",
            "correlation_id": "corr-1",
            "content_encoding": "gzip",
        },
        "body": [1, 2],
        "headers": {"h": 1},
    }
    response = await _post(client, job_id, "messages", {"agent_id": "sink", "message": spec_form})
    assert response.status_code == 202
    envelope = (await job_events(client, job_id))[-1]["payload"]["message"]["envelope"]
    assert envelope["message_id"] == response.json()["message_id"] != "mine"
    assert envelope["job_id"] == job_id and envelope["to"] == "sink"
    assert (
        envelope["from"] == "ops" and envelope["type"] == "review" and envelope["correlation_id"] == "corr-1"
    )
    assert envelope["content_encoding"] == "gzip"


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({}, "agent_id is required"),
        (None, "agent_id is required"),
        ({"agent_id": ""}, "agent_id is required"),
        ({"agent_id": 5}, "agent_id is required"),
        ({"agent_id": None, "message": []}, "agent_id is required"),
        ({"agent_id": "sink", "message": []}, "message must be an object"),
        ({"agent_id": "sink", "message": "hi"}, "message must be an object"),
        ({"agent_id": "sink", "message": None}, "message must be an object"),
        ({"agent_id": "sink", "message": {"content_encoding": "br"}}, 'unsupported content_encoding "br"'),
        (
            {"agent_id": "ghost", "message": {"envelope": {"content_encoding": 5}}},
            'unsupported content_encoding "5"',
        ),
    ],
)
async def test_message_validation(
    client: httpx.AsyncClient, db: Database, service: Service, body: Any, error: str
) -> None:
    job_id = await submit(client, lifecycle_manifest())
    await run(db, service, job_id)
    count = await event_count(db)
    if body is None:
        response = await client.post(f"{BASE}/jobs/{job_id}/messages")
    else:
        response = await _post(client, job_id, "messages", body)
    assert response.status_code == 400
    assert response.json() == {"error": error}
    assert await event_count(db) == count


async def test_message_validation_comes_before_the_status_check(
    client: httpx.AsyncClient, service: Service
) -> None:
    job_id = await submit(client, lifecycle_manifest())
    await _post(client, job_id, "cancel")
    response = await _post(
        client, job_id, "messages", {"agent_id": "sink", "message": {"content_encoding": "zip"}}
    )
    assert response.status_code == 400
    unknown_agent = await _post(client, job_id, "messages", {"agent_id": "ghost"})
    assert unknown_agent.status_code == 404
    assert unknown_agent.json() == {"error": f"agent ghost was not found in job {job_id}"}
