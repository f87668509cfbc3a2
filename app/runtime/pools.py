"""Per-node executor pools with FIFO leases (SPEC §7.6)."""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from app.ops import metrics

DEFAULT_POOL = "default"
DEFAULT_CAPACITY = 4
_DIGITS = re.compile(r"[0-9]+")

logger = logging.getLogger(__name__)

RowState = Literal["queued", "held", "removed"]


class LeaseError(Exception):
    """A lease request that can never be granted; its str is the error sentence of §7.5.2."""


class UnknownPool(LeaseError):
    """The requested pool does not exist on this node."""

    def __init__(self, pool: str) -> None:
        super().__init__(f'unknown executor pool "{pool}"')


class SlotsExceedCapacity(LeaseError):
    """More slots were requested than the pool has."""

    def __init__(self, slots: int, capacity: int) -> None:
        super().__init__(f"requested {slots} executor slots but pool capacity is {capacity}")


@dataclass(frozen=True)
class LeaseGrant:
    """A granted executor lease; `record()` is the lease record of §7.6."""

    lease_id: str
    pool: str
    slots: int
    queue_wait_ms: int
    requested_at_ms: int
    acquired_at_ms: int
    metadata: dict[str, Any]

    def record(self) -> dict[str, Any]:
        """Return the lease record `{lease_id, pool, slots, queue_wait_ms, requested_at_ms, acquired_at_ms, metadata}`."""
        return {
            "lease_id": self.lease_id,
            "pool": self.pool,
            "slots": self.slots,
            "queue_wait_ms": self.queue_wait_ms,
            "requested_at_ms": self.requested_at_ms,
            "acquired_at_ms": self.acquired_at_ms,
            "metadata": dict(self.metadata),
        }


@dataclass(frozen=True)
class LeaseRow:
    """One request or grant as the `executor_leases` mirror sees it.

    The same `lease_id` names the request while it is `queued` and the grant once `held`;
    `removed` means the row must be deleted (released, or withdrawn before a grant).
    """

    lease_id: str
    pool: str
    slots: int
    state: RowState
    requested_at_ms: int
    acquired_at_ms: int | None
    metadata: dict[str, Any]


LeaseObserver = Callable[[LeaseRow], Awaitable[None]]
"""Called after every change, in order per lease: `queued`?, `held`?, `removed`."""


@dataclass
class _Waiter:
    """A request in a pool's queue (or just granted)."""

    lease_id: str
    pool: str
    slots: int
    metadata: dict[str, Any]
    requested_at_ms: int
    future: asyncio.Future[LeaseGrant]

    def row(self, state: RowState) -> LeaseRow:
        """Return the mirror row of this request."""
        return LeaseRow(
            self.lease_id, self.pool, self.slots, state, self.requested_at_ms, None, self.metadata
        )


@dataclass
class _Pool:
    """One pool's capacity, FIFO queue and held leases."""

    name: str
    capacity: int
    in_use: int = 0
    queue: deque[_Waiter] = field(default_factory=deque)
    held: dict[str, LeaseGrant] = field(default_factory=dict)


def _epoch_ms() -> int:
    """Return the current Unix time in milliseconds."""
    return time.time_ns() // 1_000_000


def _grant_row(grant: LeaseGrant, state: RowState) -> LeaseRow:
    """Return the mirror row of a granted lease."""
    return LeaseRow(
        grant.lease_id,
        grant.pool,
        grant.slots,
        state,
        grant.requested_at_ms,
        grant.acquired_at_ms,
        grant.metadata,
    )


class ExecutorPools:
    """The executor pools of one node: FIFO leases, withdrawal on cancellation, statistics.

    All bookkeeping happens synchronously between awaits, so the pools need no lock. The
    optional `on_change` observer mirrors rows into `executor_leases`; its failures are logged
    and never affect leasing.
    """

    def __init__(
        self,
        capacities: Mapping[str, int],
        *,
        on_change: LeaseObserver | None = None,
        clock: Callable[[], int] = _epoch_ms,
    ) -> None:
        self._pools = {name: _Pool(name, capacity) for name, capacity in capacities.items()}
        for pool in self._pools.values():
            metrics.pool_changed(pool.name, pool.capacity, 0, 0)
        self._pool_of: dict[str, str] = {}
        self._on_change = on_change
        self._clock = clock

    @property
    def capacities(self) -> dict[str, int]:
        """Return `{pool: capacity}`."""
        return {name: pool.capacity for name, pool in self._pools.items()}

    async def acquire(self, pool: str, slots: int, metadata: Mapping[str, Any]) -> LeaseGrant:
        """Wait for `slots` slots of `pool` in FIFO order; cancelling the wait withdraws the request."""
        state = self._checked(pool, slots)
        waiter = _Waiter(
            str(uuid.uuid4()),
            pool,
            slots,
            dict(metadata),
            self._clock(),
            asyncio.get_running_loop().create_future(),
        )
        state.queue.append(waiter)
        self._drain(state)
        try:
            if not waiter.future.done():
                await self._notify(waiter.row("queued"))
            grant = await waiter.future
            await self._notify(_grant_row(grant, "held"))
            return grant
        except asyncio.CancelledError:
            await self._abandon(state, waiter)
            raise

    async def release(self, lease_id: str) -> LeaseGrant | None:
        """Return a lease's slots and grant waiting requests in queue order; unknown ids are ignored."""
        grant = self._release_now(lease_id)
        if grant is not None:
            await self._notify(_grant_row(grant, "removed"))
        return grant

    def stats(self) -> dict[str, dict[str, int]]:
        """Return `{pool: {capacity, in_use, available, queued, active}}`."""
        return {name: self._pool_stats(pool) for name, pool in self._pools.items()}

    def held(self) -> list[LeaseGrant]:
        """Return every lease currently held, across pools."""
        return [grant for pool in self._pools.values() for grant in pool.held.values()]

    def _pool_stats(self, pool: _Pool) -> dict[str, int]:
        """Return the statistics of one pool."""
        return {
            "capacity": pool.capacity,
            "in_use": pool.in_use,
            "available": max(pool.capacity - pool.in_use, 0),
            "queued": sum(1 for waiter in pool.queue if not waiter.future.done()),
            "active": len(pool.held),
        }

    def _checked(self, pool: str, slots: int) -> _Pool:
        """Return the pool, refusing unknown pools and requests above capacity."""
        state = self._pools.get(pool)
        if state is None:
            raise UnknownPool(pool)
        if slots > state.capacity:
            raise SlotsExceedCapacity(slots, state.capacity)
        return state

    def _drain(self, pool: _Pool) -> None:
        """Grant queued requests from the head while they fit; the head blocks everything behind it.

        Every change of a pool (a request, a grant, a release, a withdrawal) ends here.
        """
        while pool.queue:
            head = pool.queue[0]
            if head.future.done():  # cancelled, its task has not withdrawn it yet
                pool.queue.popleft()
                continue
            if pool.in_use + head.slots > pool.capacity:
                break
            pool.queue.popleft()
            head.future.set_result(self._grant(pool, head))
        metrics.pool_changed(pool.name, pool.capacity, pool.in_use, len(pool.queue))

    def _grant(self, pool: _Pool, waiter: _Waiter) -> LeaseGrant:
        """Record a grant for a request that fits."""
        acquired = self._clock()
        grant = LeaseGrant(
            lease_id=waiter.lease_id,
            pool=waiter.pool,
            slots=waiter.slots,
            queue_wait_ms=max(acquired - waiter.requested_at_ms, 0),
            requested_at_ms=waiter.requested_at_ms,
            acquired_at_ms=acquired,
            metadata=waiter.metadata,
        )
        pool.in_use += waiter.slots
        pool.held[grant.lease_id] = grant
        self._pool_of[grant.lease_id] = grant.pool
        return grant

    def _release_now(self, lease_id: str) -> LeaseGrant | None:
        """Take a held lease back and grant what now fits, without awaiting."""
        name = self._pool_of.pop(lease_id, None)
        if name is None:
            return None
        pool = self._pools[name]
        grant = pool.held.pop(lease_id)
        pool.in_use -= grant.slots
        self._drain(pool)
        return grant

    async def _abandon(self, pool: _Pool, waiter: _Waiter) -> None:
        """Undo a cancelled acquire: release a grant it never returned, or withdraw the request."""
        # The grant may have been made between the cancellation and this handler running; the
        # caller will never see it, so it is released here rather than leaked.
        if waiter.future.done() and not waiter.future.cancelled():
            self._release_now(waiter.lease_id)
        else:
            waiter.future.cancel()
            if waiter in pool.queue:
                pool.queue.remove(waiter)
            self._drain(pool)
        await self._notify(waiter.row("removed"))

    async def _notify(self, row: LeaseRow) -> None:
        """Tell the observer about a row change; its failures are logged, not raised."""
        if self._on_change is None:
            return
        try:
            await self._on_change(row)
        except Exception:
            logger.warning(
                "executor lease observer failed for %s (%s)", row.lease_id, row.state, exc_info=True
            )


def parse_pool_capacities(
    max_concurrency_raw: str | None, capacities_raw: str | None
) -> tuple[dict[str, int], list[str]]:
    """Return the pool capacities of §7.6 and warnings for the values that were ignored."""
    warnings: list[str] = []
    default = _positive_int(max_concurrency_raw)
    if default is None:
        default = DEFAULT_CAPACITY
        if max_concurrency_raw is not None:
            warnings.append(
                f'invalid MIRROR_NEURON_EXECUTOR_MAX_CONCURRENCY "{max_concurrency_raw}"; '
                f"using {DEFAULT_CAPACITY}"
            )
    capacities = {DEFAULT_POOL: default}
    for entry in (capacities_raw or "").split(","):
        parsed = _capacity_entry(entry)
        if parsed is not None:
            capacities[parsed[0]] = parsed[1]
        elif entry.strip():
            warnings.append(f'ignoring MIRROR_NEURON_EXECUTOR_POOL_CAPACITIES entry "{entry.strip()}"')
    return capacities, warnings


def _capacity_entry(entry: str) -> tuple[str, int] | None:
    """Parse one `name=positive integer` entry, else None."""
    name, sep, value = entry.partition("=")
    capacity = _positive_int(value)
    if not sep or not name.strip() or capacity is None:
        return None
    return name.strip(), capacity


def _positive_int(raw: str | None) -> int | None:
    """Return the positive integer written in ASCII digits (surrounding spaces allowed), else None."""
    text = (raw or "").strip()
    if not _DIGITS.fullmatch(text) or int(text) < 1:
        return None
    return int(text)
