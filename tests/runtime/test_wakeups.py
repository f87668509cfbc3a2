"""Wake-ups across processes (app/store/wakeups.py): on Postgres a node reacts to what another
process commits at once, not at its next poll.

The node polls once a minute here, so anything it does within seconds was woken by a
notification. "Another process" is a second `Service` on the database: its commits carry its
own origin, and this node's process never sees them through `Service.subscribe`. SQLite has no
notification channel (its nodes poll); those tests say so and skip there.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from app.domain import events as ev
from app.domain.canonical import sha256_hex
from app.domain.job import CancelJob
from app.domain.manifest import normalize_manifest
from app.service import Service
from app.store import event_store, wakeups
from app.store.database import Database
from tests.runtime.conftest import Harness

POSTGRES_ONLY = "LISTEN/NOTIFY is Postgres's; SQLite nodes poll (see test_wakeup_encoding for the rest)"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"poll_interval_ms": 60_000}


def trivial() -> dict[str, Any]:
    return normalize_manifest({
        "manifest_version": "1.0",
        "graph_id": "wake_v1",
        "entrypoints": ["router"],
        "nodes": [
            {"node_id": "router", "agent_type": "router"},
            {"node_id": "sink", "agent_type": "aggregator", "config": {"complete_after": 1}},
        ],
        "edges": [{"from_node": "router", "to_node": "sink", "message_type": "*"}],
    })


def sleeper() -> dict[str, Any]:
    return normalize_manifest({
        "manifest_version": "1.0",
        "graph_id": "wake_sleep_v1",
        "entrypoints": ["work"],
        "nodes": [{"node_id": "work", "agent_type": "executor", "config": {"command": ["sleep", "60"]}}],
        "edges": [],
    })


async def submit_elsewhere(other: Service, manifest: dict[str, Any]) -> str:
    submitted = await other.submit(manifest=manifest, bundle=None, idempotency_key=None, request_sha256=sha256_hex("x"))
    return submitted.job_id


async def listening(harness: Harness) -> wakeups.Listener:
    listener = harness.node.listener
    assert listener is not None
    await asyncio.wait_for(listener.connected.wait(), timeout=10)
    return listener


async def test_a_job_submitted_by_another_process_runs_at_once(harness: Harness, db: Database, backend: str) -> None:
    if backend != "postgres":
        assert harness.node.listener is None
        pytest.skip(POSTGRES_ONLY)
    await listening(harness)
    other = Service(db)
    job_id = await submit_elsewhere(other, trivial())
    details = await harness.wait_status(job_id, timeout=10)  # the node's poll is a minute away
    assert details["job"]["status"] == "completed"
    types = [e["type"] for e in await harness.events(job_id)]
    assert types[:2] == [ev.JOB_SUBMITTED, ev.JOB_QUEUED]
    await harness.audit(job_id)


async def test_a_cancel_through_another_process_stops_the_running_command_at_once(
    harness: Harness, db: Database, backend: str
) -> None:
    if backend != "postgres":
        pytest.skip(POSTGRES_ONLY)
    await listening(harness)
    other = Service(db)
    job_id = await submit_elsewhere(other, sleeper())
    await harness.wait_event(job_id, lambda e: e["type"] == ev.EXECUTOR_LEASE_ACQUIRED, timeout=10)
    runner = harness.node.runners[job_id]
    await other.execute(job_id, CancelJob("cancelled by operator"))
    await asyncio.wait_for(runner.done.wait(), timeout=10)  # the command (sleep 60) was killed
    assert (await harness.details(job_id))["job"]["status"] == "cancelled"


async def test_the_listener_reconnects_after_losing_its_connection(harness: Harness, db: Database, backend: str) -> None:
    if backend != "postgres":
        pytest.skip(POSTGRES_ONLY)
    listener = await listening(harness)
    async with db.write() as conn:
        killed = (
            await conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND query LIKE 'LISTEN %'"
                )
            )
        ).all()
    assert killed == [(True,)]
    deadline = asyncio.get_running_loop().time() + 10
    while listener.connected.is_set():  # the termination is noticed...
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.02)
    await asyncio.wait_for(listener.connected.wait(), timeout=10)  # ...and the listener is back
    job_id = await submit_elsewhere(Service(db), trivial())
    assert (await harness.wait_status(job_id, timeout=10))["job"]["status"] == "completed"


async def test_a_process_ignores_its_own_notifications(harness: Harness, db: Database, backend: str, tmp_path: Path) -> None:
    if backend != "postgres":
        pytest.skip(POSTGRES_ONLY)
    listener = await listening(harness)
    seen: list[wakeups.Wakeup] = []
    listener.on_wakeup = seen.append
    own = harness.node.service
    await submit_elsewhere(own, trivial())
    await submit_elsewhere(Service(db), trivial())
    deadline = asyncio.get_running_loop().time() + 10
    while not seen:
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.2)
    assert seen == [wakeups.Wakeup(admit=True)]  # the other service's submit only


def test_wakeup_encoding() -> None:
    wake = wakeups.Wakeup(admit=True, claim=True, jobs={"j-2", "j-1"})
    assert wakeups.encode("origin1", wake) == "origin1\nadmit\nclaim\njob j-1\njob j-2"
    assert wakeups.decode(wakeups.encode("origin1", wake)) == ("origin1", wake)
    assert wakeups.decode("o\nsomething new\njob *") == ("o", wakeups.Wakeup(every_job=True))
    many = wakeups.Wakeup(jobs={f"job-{i:05d}-" + "x" * 40 for i in range(500)})
    payload = wakeups.encode("o", many)
    assert payload == "o\njob *" and len(payload) < wakeups.MAX_PAYLOAD
    assert not wakeups.Wakeup()


async def test_a_submit_through_the_nodes_own_process_is_admitted_with_it(
    harness: Harness, db: Database, backend: str
) -> None:
    """Both databases: the node of the submitting process admits the job in the submit's commit."""
    job_id = await submit_elsewhere(harness.node.service, trivial())
    async with db.read() as conn:  # the 201 has been answered; the poll is a minute away
        first = (await event_store.read_stream(conn, job_id))[:2]
    assert [e.type for e in first] == [ev.JOB_SUBMITTED, ev.JOB_QUEUED]
    assert first[1].payload == {"node": harness.node.name}
    assert (await harness.wait_status(job_id, timeout=10))["job"]["status"] == "completed"
    # A process without a runtime node leaves its submits pending for the nodes to admit.
    api_only = Service(db)
    assert api_only.admitting_node is None
    submitted = await api_only.submit(manifest=trivial(), bundle=None, idempotency_key=None, request_sha256="0" * 64)
    assert submitted.status == "pending"
    if backend == "sqlite":  # nothing wakes the node: the job waits for its poll
        async with db.read() as conn:
            assert [e.type for e in await event_store.read_stream(conn, submitted.job_id)] == [ev.JOB_SUBMITTED]
    else:  # the submit's notification wakes the node, which admits and runs it
        assert (await harness.wait_status(submitted.job_id, timeout=10))["job"]["status"] == "completed"


async def test_a_notification_that_cannot_be_sent_never_fails_the_write(
    db: Database, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if backend != "postgres":
        pytest.skip(POSTGRES_ONLY)
    sent: list[wakeups.Wakeup] = []

    async def full_queue(conn: Any, origin: str, wake: wakeups.Wakeup) -> None:
        sent.append(wake)
        raise RuntimeError("too many notifications in the NOTIFY queue")

    monkeypatch.setattr(wakeups, "notify", full_queue)
    service = Service(db)
    submitted = await service.submit(manifest=trivial(), bundle=None, idempotency_key=None, request_sha256="0" * 64)
    assert submitted.status == "pending"
    announcer = service.notifier.announcer
    assert announcer is not None
    await asyncio.wait_for(announcer, timeout=10)  # it swallowed the failure
    assert sent == [wakeups.Wakeup(admit=True)]
    async with db.read() as conn:
        assert [e.type for e in await event_store.read_stream(conn, submitted.job_id)] == [ev.JOB_SUBMITTED]
