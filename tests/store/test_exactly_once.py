"""Exactly once through the write path: a command that carries an id appends its events once.

A commit whose acknowledgement is lost (the database committed, the connection dropped before
the answer arrived) leaves its sender not knowing; it sends the same command again. Here the
acknowledgement is lost on purpose (`lose_acks`: the transaction commits, then the caller gets
the error a dropped connection gives) and the retry must find the first commit and answer it,
through one transaction per command and through the group commit alike, on both databases.
The same on real processes and a real dropped connection: tests/runtime/test_faults_network.py.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from sqlalchemy import select

from app.domain import events as ev
from app.domain.events import NewEvent
from app.domain.job import CommitStep, Completion, DeliverExternal, RecordAgentEvents, command_id
from app.service import IdempotencyMismatch, Outcome, Service
from app.store import event_store, leases
from app.store.database import Database, DatabaseUnavailable, is_unavailable
from app.store.event_store import ConcurrencyConflict
from app.store.leases import Fence
from app.store.rebuild import verify
from app.store.tables import events
from tests.store.test_chains import TTL, claimed_job, message, received, start, stream


def lose_acks(db: Database, count: int = 1) -> None:
    """The next `count` write transactions commit, and then their caller is told the connection dropped."""
    original = db.write
    left = {"n": count}

    @asynccontextmanager
    async def write() -> AsyncIterator[Any]:
        async with original() as conn:
            yield conn
        if left["n"] > 0:
            left["n"] -= 1
            raise DatabaseUnavailable("connection lost after COMMIT")

    db.write = write  # type: ignore[method-assign]


async def started_job(db: Database, service: Service) -> tuple[str, Fence]:
    job_id, fence = await claimed_job(db, service)
    await service.execute(job_id, start(job_id), fence)
    return job_id, fence


def seed_received(job_id: str) -> RecordAgentEvents:
    return RecordAgentEvents("router", (received(message(job_id, "seed-1", "runtime", "router")),), "seed-1")


async def test_a_record_retried_after_its_commit_appends_once_and_answers_the_first(db: Database, service: Service) -> None:
    job_id, fence = await started_job(db, service)
    lose_acks(db)
    with pytest.raises(DatabaseUnavailable) as lost:
        await service.execute(job_id, seed_received(job_id), fence)
    assert is_unavailable(lost.value)
    first = [e for e in await stream(db, job_id) if e.type == ev.AGENT_MESSAGE_RECEIVED]
    assert len(first) == 1  # it did commit
    retried = await service.execute(job_id, seed_received(job_id), fence)
    assert retried.replayed
    assert [e.event_id for e in retried.events] == [first[0].event_id]
    assert [e.type for e in await stream(db, job_id)].count(ev.AGENT_MESSAGE_RECEIVED) == 1
    assert await verify(db) == []


async def test_a_completing_step_retried_after_its_commit_is_a_success_not_a_rejection(
    db: Database, service: Service
) -> None:
    job_id, fence = await started_job(db, service)
    seed = message(job_id, "seed-1", "runtime", "router")
    step = CommitStep("router", "seed-1", 0, {"n": 1}, (received(seed),), Completion("router", {"done": True}))
    lose_acks(db)
    with pytest.raises(DatabaseUnavailable):
        await service.execute(job_id, step, fence)
    retried = await service.execute(job_id, step, fence)
    assert retried.replayed
    assert [e.type for e in retried.events] == [ev.AGENT_MESSAGE_RECEIVED, ev.MESSAGE_PROCESSED, ev.JOB_COMPLETED]
    types = Counter(e.type for e in await stream(db, job_id))
    assert types[ev.MESSAGE_PROCESSED] == 1 and types[ev.JOB_COMPLETED] == 1
    assert await verify(db) == []


async def test_a_start_retried_after_its_commit_is_answered_by_it(db: Database, service: Service) -> None:
    job_id, fence = await claimed_job(db, service)
    lose_acks(db)
    with pytest.raises(DatabaseUnavailable):
        await service.execute(job_id, start(job_id), fence)
    retried = await service.execute(job_id, start(job_id), fence)
    assert retried.replayed
    assert [e.type for e in retried.events] == [ev.JOB_SCHEDULED, ev.MESSAGE_DELIVERED, ev.JOB_RUNNING]
    assert [e.type for e in await stream(db, job_id)].count(ev.JOB_SCHEDULED) == 1


async def test_retries_in_one_group_commit_each_find_their_own_commit(db: Database, service: Service) -> None:
    jobs = [await started_job(db, service) for _ in range(12)]
    lose_acks(db, count=100)  # every transaction of the first round: one batch or several
    firsts = await asyncio.gather(
        *(service.execute(job_id, seed_received(job_id), fence) for job_id, fence in jobs), return_exceptions=True
    )
    assert all(isinstance(r, DatabaseUnavailable) for r in firsts)
    lose_acks(db, count=0)
    db.write = type(db).write.__get__(db)  # type: ignore[method-assign]
    # Half of them are retried together with a new command of another job, in one batch.
    retried = await asyncio.gather(
        *(service.execute(job_id, seed_received(job_id), fence) for job_id, fence in jobs), return_exceptions=True
    )
    assert all(isinstance(r, Outcome) and r.replayed and len(r.events) == 1 for r in retried), retried
    for job_id, _ in jobs:
        assert [e.type for e in await stream(db, job_id)].count(ev.AGENT_MESSAGE_RECEIVED) == 1
    assert await verify(db) == []


async def test_the_unique_command_id_refuses_a_second_append_even_when_decide_accepts(
    db: Database, service: Service
) -> None:
    job_id, _ = await started_job(db, service)
    first = await service.execute(
        job_id, DeliverExternal("router", message(job_id, "ext-1", "external", "router")),
        command_id="key:k1", request_sha256="a" * 64,
    )
    # A second delivery is a valid command (a new message id): only the id stops it.
    again = await service.execute(
        job_id, DeliverExternal("router", message(job_id, "ext-2", "external", "router")),
        command_id="key:k1", request_sha256="a" * 64,
    )
    assert again.replayed and [e.event_id for e in again.events] == [e.event_id for e in first.events]
    with pytest.raises(IdempotencyMismatch):
        await service.execute(
            job_id, DeliverExternal("router", message(job_id, "ext-3", "external", "router")),
            command_id="key:k1", request_sha256="b" * 64,
        )
    delivered = [e for e in await stream(db, job_id) if e.type == ev.MESSAGE_DELIVERED and e.agent_id == "router"]
    assert [e.payload["message"]["envelope"]["message_id"] for e in delivered] == ["seed-1", "ext-1"]
    async with db.read() as conn:
        ids = [r.command_id for r in await conn.execute(select(events.c.command_id).where(events.c.stream_id == job_id))]
    assert ids.count("key:k1") == 1


async def test_the_store_refuses_one_command_id_twice_in_a_stream(db: Database) -> None:
    head = event_store.StreamHead()
    sealed = event_store.seal("s1", None, head, [ev_new("a")], 1)
    async with db.write() as conn:
        await event_store.insert_sealed(conn, sealed, ["c1"])
    again = event_store.seal("s1", None, event_store.StreamHead(1, sealed[0].hash, sealed[0].timestamp), [ev_new("b")], 2)
    with pytest.raises(ConcurrencyConflict):
        async with db.write() as conn:
            await event_store.insert_sealed(conn, again, ["c1"])
    other = event_store.seal("s2", None, head, [ev_new("a")], 1)
    async with db.write() as conn:  # the same id in another stream is another command
        await event_store.insert_sealed(conn, other, ["c1"])
        await event_store.insert_sealed(conn, again, [None])  # and events without an id are many
    async with db.read() as conn:
        found = await event_store.committed_commands(conn, "s1", ["c1", "c2"])
    assert list(found) == ["c1"] and [e.event_id for e in found["c1"].events] == [sealed[0].event_id, again[0].event_id]


def ev_new(kind: str) -> NewEvent:
    return NewEvent("custom", {"kind": kind})


async def test_a_step_rerun_under_a_new_lease_is_a_new_command(db: Database, service: Service) -> None:
    job_id, fence = await started_job(db, service)
    await service.execute(job_id, seed_received(job_id), fence)
    async with db.write() as conn:  # the owner's lease lapses; another node takes the job over
        await leases.expire(conn, job_id, fence, service.clock())
        taken = await leases.take_over(
            conn, job_id, node="n2", incarnation="inc-b", now_ms=service.clock(), ttl_ms=TTL
        )
    assert taken is not None
    rerun = await service.execute(job_id, seed_received(job_id), taken.fence)
    assert not rerun.replayed and len(rerun.events) == 1  # SPEC §4.7 rule 8: a re-run shows again
    assert command_id(seed_received(job_id), "inc-a.1") != command_id(seed_received(job_id), "inc-b.2")
    # The old owner, cut off meanwhile: its retry of what it committed under its lease is told
    # the truth (it committed), and anything new it sends is refused by the fence.
    before = await stream(db, job_id)
    told = await service.execute(job_id, seed_received(job_id), fence)
    assert told.replayed and told.events[0].sequence < rerun.events[0].sequence
    requested = NewEvent(ev.EXECUTOR_LEASE_REQUESTED, {"pool": "default", "slots": 1}, "router")
    with pytest.raises(leases.LeaseLost):
        await service.execute(job_id, RecordAgentEvents("router", (requested,), "seed-1"), fence)
    assert await stream(db, job_id) == before
