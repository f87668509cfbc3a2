"""A stale node cannot write (DESIGN §2 invariant 8, SPEC §3.3 "Node-issued commands are fenced").

The clock of the service is a test clock, so lease expiry is a matter of moving it. The last
two tests race a fenced step against a take-over in both orders: on Postgres the step's
`lease_rows` (FOR SHARE on the lease row) and the take-over's UPDATE of that row exclude
each other; on SQLite the single writer serialises them. Either way exactly one of them is
first and the other sees its result.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import insert, select

from app.domain import events as ev
from app.domain.events import Event, NewEvent
from app.domain.job import (
    AdmitJob,
    CancelJob,
    CommitStep,
    FailStep,
    RecordAgentEvents,
    StartJob,
    StartRecovery,
)
from app.service import Service
from app.store import event_store, leases
from app.store.database import Database
from app.store.leases import Fence, LeaseLost, TakenLease
from app.store.rebuild import verify
from app.store.tables import executor_leases, job_leases

T0 = 1_711_623_600_000
TTL = 10_000


class Clock:
    """A settable clock for the service."""

    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def manifest() -> dict[str, Any]:
    node: dict[str, Any] = {
        "tool_bindings": [],
        "retry_policy": {},
        "checkpoint_policy": {},
        "spawn_policy": {},
        "config": {},
    }
    return {
        "manifest_version": "1.0",
        "graph_id": "fence_v1",
        "job_name": "fence",
        "daemon": False,
        "metadata": {},
        "nodes": [{**node, "node_id": "router", "agent_type": "router", "type": "generic", "role": "root"}],
        "edges": [],
        "entrypoints": ["router"],
        "initial_inputs": {},
        "policies": {
            "placement_policy": "local",
            "recovery_mode": "local_restart",
            "max_agent_restart_attempts": 3,
        },
    }


def seed(job_id: str) -> dict[str, Any]:
    envelope = {
        "message_id": "seed-1",
        "job_id": job_id,
        "from": "runtime",
        "to": "router",
        "type": "init",
        "class": "command",
    }
    return {"envelope": envelope, "headers": {}, "body": {}, "artifacts": [], "stream": None}


def received() -> RecordAgentEvents:
    payload = {"message_id": "seed-1", "from": "runtime", "to": "router", "type": "init"}
    return RecordAgentEvents("router", (NewEvent(ev.AGENT_MESSAGE_RECEIVED, payload, "router"),))


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def fenced_service(db: Database, clock: Clock) -> Service:
    return Service(db, clock=clock)


async def running_job(db: Database, service: Service, clock: Clock) -> tuple[str, Fence]:
    """A job claimed and started by node n1 (incarnation inc-a), lease until T0 + TTL."""
    submitted = await service.submit(
        manifest=manifest(), bundle=None, idempotency_key=None, request_sha256="0" * 64
    )
    job_id = submitted.job_id
    await service.execute(job_id, AdmitJob("n1"))
    async with db.write() as conn:
        fence = await leases.claim(conn, job_id, node="n1", incarnation="inc-a", now_ms=clock.now, ttl_ms=TTL)
    assert fence == Fence("inc-a", 1)
    await service.execute(job_id, StartJob("n1", (seed(job_id),)), fence)
    return job_id, fence


async def take_over(db: Database, job_id: str, now: int) -> TakenLease | None:
    async with db.write() as conn:
        return await leases.take_over(conn, job_id, node="n2", incarnation="inc-b", now_ms=now, ttl_ms=TTL)


async def stream(db: Database, job_id: str) -> list[Event]:
    async with db.read() as conn:
        return await event_store.read_stream(conn, job_id)


async def test_a_node_whose_lease_was_taken_over_appends_nothing(
    db: Database, fenced_service: Service, clock: Clock
) -> None:
    service = fenced_service
    job_id, old = await running_job(db, service, clock)
    before = await stream(db, job_id)
    assert [e.type for e in before][-1] == ev.JOB_RUNNING

    clock.now = T0 + TTL  # expired: not even its own holder may write with it
    with pytest.raises(LeaseLost):
        await service.execute(job_id, received(), old)

    taken = await take_over(db, job_id, clock.now)
    assert taken == TakenLease(Fence("inc-b", 2), "n1", released=False)
    assert await take_over(db, job_id, clock.now) is None  # the new lease is held

    # The old holder's clock may disagree (a paused VM): the token alone refuses it.
    for now in (T0 + TTL, T0 + 1):
        clock.now = now
        for command in (
            received(),
            CommitStep("router", "seed-1", 0, {"forwarded": 1}),
            FailStep("router", "late failure", {"error": "late failure"}),
        ):
            with pytest.raises(LeaseLost):
                await service.execute(job_id, command, old)
    assert await stream(db, job_id) == before
    assert await verify(db) == []

    clock.now = T0 + TTL + 1
    started = await service.execute(job_id, StartRecovery("n2", "n1", "lease_expired"), taken.fence)
    assert [e.type for e in started.events] == [ev.JOB_RECOVERY_STARTED]
    assert started.events[0].payload["attempt"] == 1
    step = await service.execute(job_id, received(), taken.fence)
    assert [e.type for e in step.events] == [ev.AGENT_MESSAGE_RECEIVED]
    assert [e.sequence for e in await stream(db, job_id)] == list(range(1, len(before) + 3))
    assert await verify(db) == []


async def test_fenced_commands_require_a_fence(fenced_service: Service, db: Database, clock: Clock) -> None:
    job_id, _ = await running_job(db, fenced_service, clock)
    for command in (received(), StartRecovery("n2", "n1", "lease_expired")):
        with pytest.raises(ValueError, match="must carry the job lease"):
            await fenced_service.execute(job_id, command)


def _slow_check_fence(
    monkeypatch: pytest.MonkeyPatch, checked: asyncio.Event, hold: float, done_holding: asyncio.Event
) -> None:
    original: Callable[..., Any] = leases.lease_rows  # the write path's read of the lease rows it checks

    async def slow(conn: Any, job_ids: list[str]) -> Any:
        rows = await original(conn, job_ids)
        checked.set()
        await asyncio.sleep(hold)  # the fenced transaction stays open after its check
        done_holding.set()
        return rows

    monkeypatch.setattr(leases, "lease_rows", slow)


async def test_a_take_over_waits_for_an_in_flight_fenced_transaction(
    db: Database, fenced_service: Service, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id, old = await running_job(db, fenced_service, clock)
    checked, done_holding = asyncio.Event(), asyncio.Event()
    _slow_check_fence(monkeypatch, checked, 0.4, done_holding)

    clock.now = T0 + TTL // 2  # valid when checked
    step = asyncio.create_task(fenced_service.execute(job_id, received(), old))
    await checked.wait()

    async def contender() -> tuple[TakenLease | None, list[Event]]:
        async with db.write() as conn:
            taken = await leases.take_over(
                conn, job_id, node="n2", incarnation="inc-b", now_ms=T0 + TTL + 1, ttl_ms=TTL
            )
            return taken, await event_store.read_stream(conn, job_id)

    other = asyncio.create_task(contender())
    await asyncio.sleep(0.15)
    assert not other.done(), "the take-over did not wait for the fenced transaction"
    outcome = await step
    taken, seen_by_taker = await other
    assert done_holding.is_set()

    assert [e.type for e in outcome.events] == [ev.AGENT_MESSAGE_RECEIVED]
    assert taken is not None and taken.fence == Fence("inc-b", old.token + 1)
    # The take-over is ordered after the fenced commit: within its own transaction it already
    # saw the fenced step's events.
    assert {e.event_id for e in outcome.events} <= {e.event_id for e in seen_by_taker}
    assert (await stream(db, job_id))[-1] == outcome.events[-1]
    # The old holder retrying the step it committed is told that it committed (exactly once:
    # tests/store/test_exactly_once.py); anything new it sends is refused.
    retried = await fenced_service.execute(job_id, received(), old)
    assert retried.replayed and retried.events == outcome.events
    requested = NewEvent(ev.EXECUTOR_LEASE_REQUESTED, {"pool": "default", "slots": 1}, "router")
    with pytest.raises(LeaseLost):
        await fenced_service.execute(job_id, RecordAgentEvents("router", (requested,), "seed-1"), old)


async def test_a_fenced_step_waits_for_an_in_flight_take_over_and_then_fails(
    db: Database, fenced_service: Service, clock: Clock
) -> None:
    job_id, old = await running_job(db, fenced_service, clock)
    before = await stream(db, job_id)
    took, committing = asyncio.Event(), asyncio.Event()

    async def taker() -> TakenLease | None:
        async with db.write() as conn:
            taken = await leases.take_over(
                conn, job_id, node="n2", incarnation="inc-b", now_ms=T0 + TTL + 1, ttl_ms=TTL
            )
            took.set()
            await asyncio.sleep(0.3)
            committing.set()
        return taken

    other = asyncio.create_task(taker())
    await took.wait()
    clock.now = T0 + TTL // 2  # the old holder still believes its lease is valid
    with pytest.raises(LeaseLost):
        await fenced_service.execute(job_id, received(), old)
    assert committing.is_set(), "the fenced check did not wait for the take-over"
    taken = await other
    assert taken is not None and taken.fence == Fence("inc-b", 2)
    assert await stream(db, job_id) == before


async def test_the_terminal_commit_drops_the_jobs_lease_and_executor_lease_rows(
    fenced_service: Service, db: Database, clock: Clock
) -> None:
    ended, _ = await running_job(db, fenced_service, clock)
    alive, _ = await running_job(db, fenced_service, clock)
    async with db.write() as conn:
        for job_id in (ended, alive):
            await conn.execute(insert(executor_leases).values(
                lease_id=f"lease-{job_id}", node="n1", incarnation="inc-a", job_id=job_id, agent_id="router",
                pool="default", slots=1, state="held", requested_at_ms=clock.now,
            ))
    await fenced_service.execute(ended, CancelJob("test"))

    async with db.read() as conn:
        lease_jobs = set((await conn.execute(select(job_leases.c.job_id))).scalars())
        executor_jobs = set((await conn.execute(select(executor_leases.c.job_id))).scalars())
    assert lease_jobs == executor_jobs == {alive}
