"""Job list, details and cleanup (SPEC §2.8, §2.9, §2.15, §11)."""

from __future__ import annotations

import base64
import time
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from app.domain.canonical import format_ms
from app.domain.events import Event, NewEvent
from app.domain.job import CommitStep, RecordAgentEvents
from app.domain.messages import received_payload
from app.service import Service
from app.store import event_store
from app.store.database import Database
from tests.api.conftest import (
    BASE,
    NODE,
    add_node,
    admit,
    event_count,
    executor_manifest,
    expire_lease,
    job_events,
    lifecycle_manifest,
    run,
    submit,
)

LIMIT_ERROR = {"error": "limit must be an integer between 1 and 1000"}


async def _jobs(client: httpx.AsyncClient, query: str = "") -> dict[str, Any]:
    response = await client.get(f"{BASE}/jobs{query}")
    assert response.status_code == 200, response.text
    return dict(response.json())


async def _mixed(client: httpx.AsyncClient, db: Database, service: Service) -> dict[str, str]:
    """One job per interesting status, in submission order."""
    jobs = {
        "pending": await submit(client, lifecycle_manifest("alpha")),
        "queued": await submit(client, lifecycle_manifest("beta")),
        "running": await submit(client, lifecycle_manifest("alpha")),
        "paused": await submit(client, lifecycle_manifest("beta")),
        "cancelled": await submit(client, lifecycle_manifest("alpha")),
    }
    await admit(service, jobs["queued"])
    await run(db, service, jobs["running"])
    await run(db, service, jobs["paused"])
    await client.post(f"{BASE}/jobs/{jobs['paused']}/pause")
    await client.post(f"{BASE}/jobs/{jobs['cancelled']}/cancel")
    return jobs


async def test_list_order_and_summary_shape(
    client: httpx.AsyncClient, db: Database, service: Service
) -> None:
    jobs = await _mixed(client, db, service)
    body = await _jobs(client)
    assert body["next_cursor"] is None
    data = body["data"]
    assert len(data) == 5
    keys = [(j["updated_at"], j["job_id"]) for j in data]
    assert keys == sorted(keys, reverse=True)
    summary = next(j for j in data if j["job_id"] == jobs["running"])
    assert set(summary) == {
        "job_id",
        "graph_id",
        "job_name",
        "status",
        "submitted_at",
        "updated_at",
        "placement_policy",
        "recovery_policy",
        "live?",
        "executor_count",
        "active_executors",
        "nodes",
        "sandbox_names",
        "last_event",
    }
    assert (
        summary["status"] == "running" and summary["graph_id"] == "alpha" and summary["job_name"] == "alpha"
    )
    assert summary["nodes"] == [NODE]
    assert summary["last_event"] == "job_running"
    assert summary["placement_policy"] == "local" and summary["recovery_policy"] == "local_restart"
    assert {j["job_id"]: j["live?"] for j in data} == {
        jobs["pending"]: True,
        jobs["queued"]: True,
        jobs["running"]: True,
        jobs["paused"]: True,
        jobs["cancelled"]: False,
    }
    await expire_lease(db, jobs["running"])
    after = {j["job_id"]: j["live?"] for j in (await _jobs(client))["data"]}
    assert after[jobs["running"]] is False and after[jobs["paused"]] is True


async def test_list_pages_with_cursors(client: httpx.AsyncClient) -> None:
    ids = [await submit(client, lifecycle_manifest(f"page{i % 3}")) for i in range(11)]
    everything = [j["job_id"] for j in (await _jobs(client, "?limit=1000"))["data"]]
    assert sorted(everything) == sorted(ids)
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        query = "?limit=4" + ("" if cursor is None else f"&cursor={cursor}")
        body = await _jobs(client, query)
        seen.extend(j["job_id"] for j in body["data"])
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
        assert len(body["data"]) == 4
    assert pages == 3
    assert seen == everything
    exact = await _jobs(client, "?limit=11")
    assert exact["next_cursor"] is None


async def test_list_paging_with_filters(client: httpx.AsyncClient, db: Database, service: Service) -> None:
    for _ in range(2):
        await _mixed(client, db, service)
    expected = [j["job_id"] for j in (await _jobs(client, "?include_terminal=false"))["data"]]
    assert len(expected) == 8
    seen: list[str] = []
    cursor = ""
    while cursor is not None:
        body = await _jobs(client, f"?include_terminal=false&limit=3{cursor and '&cursor=' + cursor}")
        seen.extend(j["job_id"] for j in body["data"])
        cursor = body["next_cursor"]
    assert seen == expected


async def test_list_filters(client: httpx.AsyncClient, db: Database, service: Service) -> None:
    jobs = await _mixed(client, db, service)

    def ids(body: dict[str, Any]) -> set[str]:
        return {j["job_id"] for j in body["data"]}

    assert ids(await _jobs(client, "?status=running")) == {jobs["running"]}
    assert ids(await _jobs(client, "?status=pending,cancelled")) == {jobs["pending"], jobs["cancelled"]}
    assert ids(await _jobs(client, "?status=running&status=paused,queued")) == {
        jobs["running"],
        jobs["paused"],
        jobs["queued"],
    }
    live = {jobs["pending"], jobs["queued"], jobs["running"], jobs["paused"]}
    assert ids(await _jobs(client, "?include_terminal=false")) == live
    for value in ("true", "FALSE", "0", "no", ""):
        assert len(ids(await _jobs(client, f"?include_terminal={value}"))) == 5
    assert ids(await _jobs(client, "?status=cancelled&include_terminal=false")) == set()
    assert ids(await _jobs(client, "?status=cancelled,running&include_terminal=false")) == {jobs["running"]}
    assert ids(await _jobs(client, "?graph_id=beta")) == {jobs["queued"], jobs["paused"]}
    assert ids(await _jobs(client, "?graph_id=alpha&status=running,cancelled")) == {
        jobs["running"],
        jobs["cancelled"],
    }
    assert ids(await _jobs(client, "?graph_id=gamma")) == set()
    assert ids(await _jobs(client, "?unknown=1&graph_id=beta")) == {jobs["queued"], jobs["paused"]}


@pytest.mark.parametrize("value", ["0", "1001", "+5", " 5", "5 ", "1e2", "", "abc", "-1", "\uff15", "5.0"])
async def test_list_limit_validation(client: httpx.AsyncClient, value: str) -> None:
    response = await client.get(f"{BASE}/jobs?limit={quote(value)}")
    assert response.status_code == 400
    assert response.json() == LIMIT_ERROR


async def test_list_limit_edges(client: httpx.AsyncClient) -> None:
    for value in ("1", "1000", "0007"):
        assert (await client.get(f"{BASE}/jobs?limit={value}")).status_code == 200


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage!",
        "e30",  # {}
        base64.urlsafe_b64encode(b'["a"]').decode(),
        base64.urlsafe_b64encode(b"[1, 2]").decode(),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
        "\u00e9t\u00e9",
    ],
)
async def test_invalid_cursor(client: httpx.AsyncClient, cursor: str) -> None:
    response = await client.get(f"{BASE}/jobs?cursor={quote(cursor)}")
    assert response.status_code == 400
    assert response.json() == {"error": "invalid cursor"}


@pytest.mark.parametrize(
    ("query", "value"), [("bogus", "bogus"), ("running,", ""), ("", ""), ("Running", "Running")]
)
async def test_unknown_status(client: httpx.AsyncClient, query: str, value: str) -> None:
    response = await client.get(f"{BASE}/jobs?status={quote(query)}")
    assert response.status_code == 400
    assert response.json() == {"error": f'unknown status "{value}"'}


# ------------------------------------------------------------------------------------ details


async def _record(service: Service, job_id: str, fence: Any, agent_id: str, *events: NewEvent) -> None:
    await service.execute(job_id, RecordAgentEvents(agent_id, tuple(events)), fence)


async def test_details(client: httpx.AsyncClient, db: Database, service: Service) -> None:
    now = int(time.time() * 1000)
    await add_node(db, NODE, heartbeat_ms=now)
    job_id = await submit(client, executor_manifest())
    job = await run(db, service, job_id)
    for agent in ("worker_a", "worker_b"):
        assert (
            await client.post(f"{BASE}/jobs/{job_id}/messages", json={"agent_id": agent})
        ).status_code == 202
    events = await job_events(client, job_id)
    to_a = next(e for e in events if e["agent_id"] == "worker_a")["payload"]["message"]
    to_b = next(e for e in events if e["agent_id"] == "worker_b")["payload"]["message"]
    lease = {"lease_id": "lease-a", "pool": "default", "slots": 1}
    await _record(
        service,
        job_id,
        job.fence,
        "worker_a",
        NewEvent("agent_message_received", received_payload(to_a), "worker_a"),
        NewEvent("executor_lease_requested", {"pool": "default", "slots": 1}, "worker_a"),
        NewEvent("executor_lease_acquired", {**lease, "queue_wait_ms": 0}, "worker_a"),
    )
    details = (await client.get(f"{BASE}/jobs/{job_id}")).json()
    worker_a = next(a for a in details["agents"] if a["agent_id"] == "worker_a")
    assert worker_a["running?"] is True and worker_a["status"] == "running"
    assert worker_a["lease"] == lease
    assert details["summary"]["active_executors"] == 1
    assert details["summary"]["executor_count"] == 2

    await _record(
        service,
        job_id,
        job.fence,
        "worker_a",
        NewEvent("executor_lease_released", lease, "worker_a"),
        NewEvent(
            "sandbox_job_completed",
            {
                "sandbox_name": "sbx-a",
                "exit_code": 0,
                "attempts": 1,
                "lease_id": "lease-a",
                "pool": "default",
            },
            "worker_a",
        ),
    )
    await service.execute(job_id, CommitStep("worker_a", to_a["envelope"]["message_id"], 0, None), job.fence)
    await _record(
        service,
        job_id,
        job.fence,
        "worker_b",
        NewEvent("agent_message_received", received_payload(to_b), "worker_b"),
        NewEvent(
            "executor_attempt_failed",
            {
                "attempt": 1,
                "max_attempts": 1,
                "error": "command exited with status 3",
                "exit_code": 3,
                "transient": False,
                "retry_in_ms": None,
                "sandbox_name": "sbx-b",
                "pool": "default",
            },
            "worker_b",
        ),
    )

    response = await client.get(f"{BASE}/jobs/{job_id}")
    assert response.status_code == 200
    details = response.json()
    assert set(details) == {"job", "summary", "agents", "recent_events", "sandboxes"}
    record = details["job"]
    assert set(record) == {
        "job_id",
        "graph_id",
        "job_name",
        "status",
        "status_reason",
        "daemon",
        "submitted_at",
        "updated_at",
        "root_agent_ids",
        "placement_policy",
        "recovery_policy",
        "max_agent_restart_attempts",
        "result",
        "node",
        "recovery_count",
        "last_sequence",
        "last_hash",
        "manifest_ref",
        "bundle",
        "idempotency_key",
    }
    all_events = await job_events(client, job_id)
    assert record["last_sequence"] == len(all_events) == all_events[-1]["sequence"]
    assert record["last_hash"] == all_events[-1]["hash"]
    assert record["node"] == NODE and record["status"] == "running" and record["daemon"] is False
    assert record["max_agent_restart_attempts"] == 3 and record["recovery_count"] == 0
    assert record["submitted_at"] == all_events[0]["timestamp"]
    assert record["updated_at"] == next(e for e in all_events if e["type"] == "job_running")["timestamp"]

    agents = {a["agent_id"]: a for a in details["agents"]}
    assert [a["agent_id"] for a in details["agents"]] == ["root", "worker_a", "worker_b"]
    assert agents["worker_a"]["status"] == "completed" and agents["worker_a"]["running?"] is False
    assert agents["worker_a"]["sandbox_name"] == "sbx-a" and agents["worker_a"]["processed_messages"] == 1
    assert agents["worker_b"]["status"] == "error"
    assert agents["worker_b"]["last_error"] == "command exited with status 3"
    assert agents["worker_b"]["running?"] is True
    assert agents["root"]["status"] == "busy" and agents["root"]["mailbox_depth"] == 1
    assert agents["root"]["type"] == "generic" and agents["root"]["role"] == "root"
    assert agents["root"]["lease"] == {"lease_id": None, "pool": None, "slots": None}
    for agent in details["agents"]:
        assert agent["assigned_node"] == NODE
        assert agent["live?"] is True and agent["paused?"] is False
        assert agent["last_heartbeat_at"] == format_ms(now)
    assert set(agents["root"]) == {
        "agent_id",
        "agent_type",
        "type",
        "role",
        "assigned_node",
        "processed_messages",
        "mailbox_depth",
        "paused?",
        "last_heartbeat_at",
        "live?",
        "status",
        "running?",
        "last_error",
        "sandbox_name",
        "lease",
    }
    stamp = {
        e["agent_id"]: e["timestamp"]
        for e in all_events
        if e["type"] in ("sandbox_job_completed", "executor_attempt_failed")
    }
    assert details["sandboxes"] == [
        {
            "agent_id": "worker_a",
            "sandbox_name": "sbx-a",
            "exit_code": 0,
            "pool": "default",
            "timestamp": stamp["worker_a"],
        },
        {
            "agent_id": "worker_b",
            "sandbox_name": "sbx-b",
            "exit_code": 3,
            "pool": "default",
            "timestamp": stamp["worker_b"],
        },
    ]
    assert details["summary"]["sandbox_names"] == ["sbx-a", "sbx-b"]
    assert details["summary"]["active_executors"] == 1
    assert details["summary"]["last_event"] == "executor_attempt_failed(worker_b)"

    await expire_lease(db, job_id)
    stale = (await client.get(f"{BASE}/jobs/{job_id}")).json()
    assert stale["summary"]["live?"] is False
    assert all(a["live?"] is False and a["last_heartbeat_at"] is None for a in stale["agents"])

    await client.post(f"{BASE}/jobs/{job_id}/cancel")
    done = (await client.get(f"{BASE}/jobs/{job_id}")).json()
    assert done["summary"]["active_executors"] == 0
    assert {a["agent_id"]: a["running?"] for a in done["agents"]}["worker_b"] is False


async def test_recent_events_are_the_25_newest(
    client: httpx.AsyncClient, db: Database, service: Service
) -> None:
    job_id = await submit(client, lifecycle_manifest())
    await run(db, service, job_id)
    for i in range(30):
        response = await client.post(
            f"{BASE}/jobs/{job_id}/messages", json={"agent_id": "sink", "message": {"i": i}}
        )
        assert response.status_code == 202
    details = (await client.get(f"{BASE}/jobs/{job_id}")).json()
    recent = details["recent_events"]
    assert len(recent) == 25
    last = details["job"]["last_sequence"]
    assert [e["sequence"] for e in recent] == list(range(last, last - 25, -1))
    assert recent[0]["payload"]["message"]["body"] == {"i": 29}
    assert set(recent[0]) == {
        "sequence",
        "position",
        "event_id",
        "job_id",
        "type",
        "timestamp",
        "agent_id",
        "payload",
        "hash",
        "hash_alg",
    }
    sink = next(a for a in details["agents"] if a["agent_id"] == "sink")
    assert sink["mailbox_depth"] == 30 and sink["status"] == "busy"


# ------------------------------------------------------------------------------------ cleanup


async def _system_events(db: Database) -> list[Event]:
    async with db.read() as conn:
        return await event_store.read_stream(conn, "system")


async def test_cleanup_deletes_terminal_jobs(
    client: httpx.AsyncClient, db: Database, service: Service
) -> None:
    jobs = await _mixed(client, db, service)
    second = await submit(client, lifecycle_manifest("omega"))
    await client.post(f"{BASE}/jobs/{second}/cancel")
    terminal = sorted([jobs["cancelled"], second])
    counts = {j: len(await job_events(client, j)) for j in terminal}
    hashes = {j: (await job_events(client, j))[-1]["hash"] for j in terminal}
    response = await client.post(f"{BASE}/jobs/cleanup")
    assert response.status_code == 200
    assert response.json() == {"deleted_count": 2, "deleted_jobs": terminal}
    for job_id in terminal:
        for method, path in (("GET", ""), ("GET", "/events"), ("POST", "/cancel"), ("POST", "/pause")):
            gone = await client.request(method, f"{BASE}/jobs/{job_id}{path}")
            assert gone.status_code == 404
            assert gone.json() == {"error": f"job {job_id} was not found"}
    remaining = {j["job_id"] for j in (await _jobs(client))["data"]}
    assert remaining == {jobs["pending"], jobs["queued"], jobs["running"], jobs["paused"]}
    audit = [e for e in await _system_events(db) if e.type == "jobs_cleaned"]
    assert [e.payload["job_ids"] for e in audit] == [[j] for j in terminal]
    for event in audit:
        (job_id,) = event.payload["job_ids"]
        assert event.payload == {
            "job_ids": [job_id],
            "event_counts": {job_id: counts[job_id]},
            "last_hashes": {job_id: hashes[job_id]},
            "statuses": {job_id: "cancelled"},
            "requested_all": False,
            "older_than": None,
            "node": NODE,
        }
    feed = (await client.get(f"{BASE}/events?limit=1000")).json()["data"]
    assert not {e["job_id"] for e in feed} & set(terminal)
    again = await client.post(f"{BASE}/jobs/cleanup")
    assert again.json() == {"deleted_count": 0, "deleted_jobs": []}


async def test_cleanup_all_cancels_live_jobs(
    client: httpx.AsyncClient, db: Database, service: Service
) -> None:
    jobs = await _mixed(client, db, service)
    committed: list[Event] = []
    service.subscribe(lambda _stream, recorded: committed.extend(recorded))
    response = await client.post(f"{BASE}/jobs/cleanup?all=true")
    assert response.status_code == 200
    assert response.json() == {"deleted_count": 5, "deleted_jobs": sorted(jobs.values())}
    cancels = {e.job_id: e.payload for e in committed if e.type == "job_cancelled"}
    live = {jobs[s] for s in ("pending", "queued", "running", "paused")}
    assert set(cancels) == live
    for payload in cancels.values():
        assert payload == {"reason": "cancelled by cleanup", "result": {"reason": "cancelled by cleanup"}}
    audit = [e.payload for e in await _system_events(db) if e.type == "jobs_cleaned"]
    assert all(
        p["requested_all"] is True and next(iter(p["statuses"].values())) == "cancelled" for p in audit
    )
    assert (await _jobs(client))["data"] == []


async def test_cleanup_all_accepts_1_only_as_true(
    client: httpx.AsyncClient, db: Database, service: Service
) -> None:
    await submit(client, lifecycle_manifest())
    for value in ("yes", "TRUE", "on", ""):
        assert (await client.post(f"{BASE}/jobs/cleanup?all={value}")).json()["deleted_count"] == 0
    assert (await client.post(f"{BASE}/jobs/cleanup?all=1")).json()["deleted_count"] == 1


async def test_cleanup_older_than(client: httpx.AsyncClient, db: Database) -> None:
    job_id = await submit(client, lifecycle_manifest())
    await client.post(f"{BASE}/jobs/{job_id}/cancel")
    assert (await client.post(f"{BASE}/jobs/cleanup?older_than=3600")).json()["deleted_count"] == 0
    response = await client.post(f"{BASE}/jobs/cleanup?older_than=0")
    assert response.json() == {"deleted_count": 1, "deleted_jobs": [job_id]}
    audit = [e.payload for e in await _system_events(db) if e.type == "jobs_cleaned"]
    assert audit[-1]["older_than"] == 0


@pytest.mark.parametrize("value", ["-1", "1.5", "abc", " 1", "+1", "", "1e3"])
async def test_cleanup_older_than_validation(client: httpx.AsyncClient, db: Database, value: str) -> None:
    job_id = await submit(client, lifecycle_manifest())
    await client.post(f"{BASE}/jobs/{job_id}/cancel")
    before = await event_count(db)
    response = await client.post(f"{BASE}/jobs/cleanup?older_than={quote(value)}")
    assert response.status_code == 400
    assert response.json() == {"error": "older_than must be a non-negative integer"}
    assert await event_count(db) == before


async def test_cleanup_frees_the_idempotency_key(client: httpx.AsyncClient) -> None:
    key = {"Idempotency-Key": "reuse-me"}
    first = await submit(client, lifecycle_manifest(), **key)
    await client.post(f"{BASE}/jobs/{first}/cancel")
    await client.post(f"{BASE}/jobs/cleanup")
    second = await client.post(f"{BASE}/jobs", json=lifecycle_manifest(), headers=key)
    assert second.status_code == 201
    assert second.json()["job_id"] != first


async def test_cleanup_all_with_older_than_deletes_the_live_jobs_it_cancels(
    client: httpx.AsyncClient, db: Database, service: Service
) -> None:
    """The cancel that `all` appends first must not make the job look too young to delete."""
    job_id = await submit(client, lifecycle_manifest())
    await run(db, service, job_id)
    response = await client.post(f"{BASE}/jobs/cleanup?all=true&older_than=0")
    assert response.json() == {"deleted_count": 1, "deleted_jobs": [job_id]}
    assert (await client.get(f"{BASE}/jobs/{job_id}")).status_code == 404
