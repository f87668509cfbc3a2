"""Executor pools: FIFO leases, withdrawal, statistics, capacity parsing (SPEC §7.6)."""

from __future__ import annotations

import asyncio
import uuid
from itertools import count

import pytest

from app.runtime.pools import (
    ExecutorPools,
    LeaseError,
    LeaseGrant,
    LeaseRow,
    SlotsExceedCapacity,
    UnknownPool,
    parse_pool_capacities,
)

META = {"job_id": "j", "agent_id": "a", "node": "n1"}


async def _settle() -> None:
    """Let every ready task run."""
    for _ in range(5):
        await asyncio.sleep(0)


def _acquire(pools: ExecutorPools, pool: str, slots: int, agent: str = "a") -> asyncio.Task[LeaseGrant]:
    return asyncio.ensure_future(pools.acquire(pool, slots, {**META, "agent_id": agent}))


async def test_immediate_grant_and_record() -> None:
    ticks = count(1000, 5)
    pools = ExecutorPools({"default": 2}, clock=lambda: next(ticks))
    grant = await pools.acquire("default", 1, META)
    assert uuid.UUID(grant.lease_id).version == 4
    assert grant.record() == {
        "lease_id": grant.lease_id,
        "pool": "default",
        "slots": 1,
        "queue_wait_ms": 5,
        "requested_at_ms": 1000,
        "acquired_at_ms": 1005,
        "metadata": META,
    }
    assert pools.stats() == {
        "default": {"capacity": 2, "in_use": 1, "available": 1, "queued": 0, "active": 1}
    }
    assert await pools.release(grant.lease_id) == grant
    assert await pools.release(grant.lease_id) is None
    assert pools.stats()["default"]["in_use"] == 0


async def test_errors_have_exact_messages() -> None:
    pools = ExecutorPools({"default": 2})
    with pytest.raises(UnknownPool) as unknown:
        await pools.acquire("gpu", 1, META)
    assert str(unknown.value) == 'unknown executor pool "gpu"'
    with pytest.raises(SlotsExceedCapacity) as too_many:
        await pools.acquire("default", 3, META)
    assert str(too_many.value) == "requested 3 executor slots but pool capacity is 2"
    assert isinstance(too_many.value, LeaseError)


async def test_fifo_head_blocks_smaller_later_requests() -> None:
    pools = ExecutorPools({"default": 3})
    first = await pools.acquire("default", 2, META)
    big = _acquire(pools, "default", 3, "big")
    await _settle()
    small = _acquire(pools, "default", 1, "small")
    await _settle()
    assert not big.done() and not small.done()  # 1 slot is free, but the head needs 3
    assert pools.stats()["default"] == {"capacity": 3, "in_use": 2, "available": 1, "queued": 2, "active": 1}
    await pools.release(first.lease_id)
    await _settle()
    assert big.done() and not small.done()
    await pools.release(big.result().lease_id)
    await _settle()
    assert small.done()
    assert small.result().metadata["agent_id"] == "small"


async def test_release_grants_several_waiters_in_order() -> None:
    pools = ExecutorPools({"p": 2})
    held = await pools.acquire("p", 2, META)
    order: list[str] = []

    async def take(name: str) -> LeaseGrant:
        grant = await pools.acquire("p", 1, {**META, "agent_id": name})
        order.append(name)
        return grant

    tasks = [asyncio.ensure_future(take(name)) for name in ("w1", "w2", "w3")]
    await _settle()
    await pools.release(held.lease_id)
    await _settle()
    assert order == ["w1", "w2"]
    assert pools.stats()["p"]["queued"] == 1
    await pools.release(tasks[0].result().lease_id)
    await _settle()
    assert order == ["w1", "w2", "w3"]


async def test_queue_wait_is_measured() -> None:
    ticks = count(0, 10)
    pools = ExecutorPools({"p": 1}, clock=lambda: next(ticks))
    first = await pools.acquire("p", 1, META)  # requested 0, acquired 10
    waiting = _acquire(pools, "p", 1)
    await _settle()  # requested 20
    await pools.release(first.lease_id)  # acquired 30
    grant = await waiting
    assert (grant.requested_at_ms, grant.acquired_at_ms, grant.queue_wait_ms) == (20, 30, 10)


async def test_cancelled_waiter_is_withdrawn_and_unblocks_the_queue() -> None:
    pools = ExecutorPools({"p": 2})
    held = await pools.acquire("p", 1, META)
    big = _acquire(pools, "p", 2, "big")
    await _settle()
    small = _acquire(pools, "p", 1, "small")
    await _settle()
    assert pools.stats()["p"]["queued"] == 2
    big.cancel()
    with pytest.raises(asyncio.CancelledError):
        await big
    await _settle()
    assert small.done()  # the withdrawn head no longer blocks it
    assert pools.stats()["p"] == {"capacity": 2, "in_use": 2, "available": 0, "queued": 0, "active": 2}
    await pools.release(held.lease_id)
    await pools.release(small.result().lease_id)
    assert pools.stats()["p"]["in_use"] == 0


async def test_grant_racing_a_cancel_is_released() -> None:
    pools = ExecutorPools({"p": 1})
    held = await pools.acquire("p", 1, META)
    waiter = _acquire(pools, "p", 1)
    await _settle()
    await pools.release(held.lease_id)  # grants the waiter ...
    waiter.cancel()  # ... which is cancelled before it resumes
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert pools.stats()["p"] == {"capacity": 1, "in_use": 0, "available": 1, "queued": 0, "active": 0}


async def test_observer_sees_queued_held_removed() -> None:
    rows: list[LeaseRow] = []

    async def observe(row: LeaseRow) -> None:
        rows.append(row)

    pools = ExecutorPools({"p": 1}, on_change=observe)
    first = await pools.acquire("p", 1, META)
    second = _acquire(pools, "p", 1)
    third = _acquire(pools, "p", 1)
    await _settle()
    third.cancel()
    await _settle()
    await pools.release(first.lease_id)
    grant = await second
    await pools.release(grant.lease_id)
    states = [(row.lease_id, row.state) for row in rows]
    assert (first.lease_id, "held") == states[0]
    assert states.count((grant.lease_id, "queued")) == 1
    assert states.index((grant.lease_id, "queued")) < states.index((grant.lease_id, "held"))
    assert states.index((grant.lease_id, "held")) < states.index((grant.lease_id, "removed"))
    assert [state for lease, state in states if lease not in (first.lease_id, grant.lease_id)] == [
        "queued",
        "removed",
    ]
    held_row = next(row for row in rows if row.lease_id == grant.lease_id and row.state == "held")
    assert held_row.acquired_at_ms == grant.acquired_at_ms and held_row.metadata == META


async def test_observer_failure_does_not_break_leasing() -> None:
    async def broken(row: LeaseRow) -> None:
        raise RuntimeError("db down")

    pools = ExecutorPools({"p": 1}, on_change=broken)
    grant = await pools.acquire("p", 1, META)
    assert await pools.release(grant.lease_id) == grant


async def test_pools_are_independent() -> None:
    pools = ExecutorPools({"a": 1, "b": 1})
    await pools.acquire("a", 1, META)
    grant_b = await asyncio.wait_for(pools.acquire("b", 1, META), 1)
    assert grant_b.pool == "b"
    assert pools.capacities == {"a": 1, "b": 1}
    assert len(pools.held()) == 2


@pytest.mark.parametrize(
    ("max_concurrency", "capacities", "expected", "warnings"),
    [
        (None, None, {"default": 4}, 0),
        ("8", None, {"default": 8}, 0),
        ("x", None, {"default": 4}, 1),
        ("0", None, {"default": 4}, 1),
        ("-2", None, {"default": 4}, 1),
        ("2", "gpu=2,io=8", {"default": 2, "gpu": 2, "io": 8}, 0),
        ("2", "default=6", {"default": 6}, 0),
        (None, " gpu = 3 , bad, x=0, y=-1, =4, z=1.5, ,", {"default": 4, "gpu": 3}, 5),
        (None, "a=1,a=5", {"default": 4, "a": 5}, 0),
    ],
)
def test_parse_pool_capacities(
    max_concurrency: str | None, capacities: str | None, expected: dict[str, int], warnings: int
) -> None:
    parsed, messages = parse_pool_capacities(max_concurrency, capacities)
    assert parsed == expected
    assert len(messages) == warnings
