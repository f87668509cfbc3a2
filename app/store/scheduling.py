"""The scheduler's queries (SPEC §3.2, §8): jobs to admit, to claim, to recover, and the heads of owned jobs.

Every statement is built once (the scheduler runs them on every poll and wake-up): see
projector.SELECT_JOB. Admission and claims take jobs in submission order: the position of their
job_submitted (SPEC §3.2), not a millisecond timestamp, which many submits share.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import and_, bindparam, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain.events import Event
from app.store import leases
from app.store.database import Prepared
from app.store.event_store import read_streams, row_to_event
from app.store.leases import Fence
from app.store.tables import any_of, events, id_list, job_leases, jobs, prepared

RECOVERABLE = ("running", "paused")
ADMIT_PAGE = 500
_HEADS_PAGE = 500

_PENDING = Prepared(
    select(jobs.c.job_id).where(jobs.c.status == "pending")
    .order_by(jobs.c.submitted_position, jobs.c.job_id).limit(ADMIT_PAGE)
)
_ANY_QUEUED = Prepared(select(jobs.c.job_id).where(jobs.c.status == "queued").limit(1))
# Several nodes claim at once: each skips the rows another is claiming (SQLite drops the clause;
# its write transactions are serialised anyway).
_QUEUED = Prepared(
    select(jobs.c.job_id).where(jobs.c.status == "queued")
    .order_by(jobs.c.submitted_position, jobs.c.job_id).limit(bindparam("b_free"))
    .with_for_update(skip_locked=True)
)


def _claim_queued_pg() -> Prepared:
    """The claim of queued jobs on Postgres as one statement (see `claim_queued`).

    `picked` locks up to `b_free` queued jobs (FOR UPDATE SKIP LOCKED), `taken` inserts a lease
    (token 1) for each that has no lease row, and the query returns, in submission order, every
    event of each job it took a lease for, and one row with no event for each picked job that
    already had a lease row (`fresh` false).
    """
    picked = (
        select(jobs.c.job_id, jobs.c.submitted_position).where(jobs.c.status == "queued")
        .order_by(jobs.c.submitted_position, jobs.c.job_id).limit(bindparam("b_free"))
        .with_for_update(skip_locked=True)
        .cte("picked")
    )
    taken = leases.claim_insert(picked.c.job_id).cte("taken")
    return Prepared(
        select(
            picked.c.job_id.label("picked_job_id"),
            taken.c.job_id.is_not(None).label("fresh"),
            *events.c,
        )
        .select_from(
            picked.outerjoin(taken, taken.c.job_id == picked.c.job_id)
            .outerjoin(events, events.c.stream_id == taken.c.job_id)
        )
        .order_by(picked.c.submitted_position, picked.c.job_id, events.c.sequence)
    )


_CLAIM_QUEUED_PG = _claim_queued_pg()

# Outer join: a running job whose lease row is gone altogether is recoverable too.
_RECOVERABLE = (
    select(jobs.c.job_id, jobs.c.node, job_leases.c.job_id.label("leased"))
    .select_from(jobs.outerjoin(job_leases, jobs.c.job_id == job_leases.c.job_id))
    .where(
        and_(
            jobs.c.status.in_(RECOVERABLE),
            or_(
                job_leases.c.job_id.is_(None),
                job_leases.c.released.is_(True),
                job_leases.c.expires_at_ms <= bindparam("b_now"),
            ),
        )
    )
    .order_by(job_leases.c.expires_at_ms)
    .limit(bindparam("b_free"))
)
_HEADS = prepared(lambda d: select(jobs.c.job_id, jobs.c.last_sequence).where(any_of(jobs.c.job_id, "b_job_ids", d)))


@dataclass(frozen=True)
class Recoverable:
    """A running or paused job whose lease expired, was released, or is missing."""

    job_id: str
    last_node: str | None
    leased: bool  # it has a lease row (to take over) rather than none (to claim)


async def pending_jobs(conn: AsyncConnection) -> list[str]:
    """Up to ADMIT_PAGE pending jobs, oldest submission first."""
    return [r["job_id"] for r in await _PENDING.rows(conn)]


async def any_queued(conn: AsyncConnection) -> bool:
    """True if some job is queued."""
    return await _ANY_QUEUED.first(conn) is not None


async def lock_queued(conn: AsyncConnection, limit: int) -> list[str]:
    """Up to `limit` queued jobs, oldest submission first, locked against other claimers (write transaction).

    On Postgres rows another transaction has locked are skipped (FOR UPDATE SKIP LOCKED); SQLite
    serialises write transactions instead.
    """
    return [r["job_id"] for r in await _QUEUED.rows(conn, {"b_free": limit})]


@dataclass
class Claim:
    """What `claim_queued` took: the picked jobs, the leases it took, and those jobs' events."""

    picked: list[str]  # the queued jobs locked, in submission order
    fences: dict[str, Fence]  # those whose lease this claim took (they had no lease row)
    streams: dict[str, list[Event]]  # the events of the jobs in `fences`


async def claim_queued(
    conn: AsyncConnection, limit: int, *, node: str, incarnation: str, now_ms: int, ttl_ms: int
) -> Claim:
    """Lock up to `limit` queued jobs, take the lease of those that have none, read their events.

    On Postgres one statement, run by itself in autocommit (`Database.statement`): a claim was a
    transaction of five round trips (BEGIN, lock, lease INSERT, events, COMMIT) on every freed
    slot. A picked job that already has a lease row (its claimer died before starting it) is in
    `picked` but not in `fences`: the caller takes it over. SQLite (no data-modifying CTEs)
    runs the same steps one by one in its write transaction.
    """
    if conn.dialect.name != "postgresql":
        picked = await lock_queued(conn, limit)
        fences = await leases.claim_many(
            conn, picked, node=node, incarnation=incarnation, now_ms=now_ms, ttl_ms=ttl_ms
        )
        return Claim(picked, fences, await read_streams(conn, list(fences)))
    values = {"b_free": limit, "b_node": node, "b_incarnation": incarnation, "b_expires": now_ms + ttl_ms}
    claim = Claim([], {}, {})
    fence = Fence(incarnation, 1)
    for row in await _CLAIM_QUEUED_PG.rows(conn, values):
        job_id = row["picked_job_id"]
        if not claim.picked or claim.picked[-1] != job_id:
            claim.picked.append(job_id)
            if row["fresh"]:
                claim.fences[job_id] = fence
                claim.streams[job_id] = []
        if row["fresh"] and row["position"] is not None:
            claim.streams[job_id].append(row_to_event(row))
    return claim


async def recoverable_jobs(conn: AsyncConnection, *, now_ms: int, limit: int) -> list[Recoverable]:
    """Up to `limit` running or paused jobs that no live lease holds, longest expired first."""
    rows = (await conn.execute(_RECOVERABLE, {"b_now": now_ms, "b_free": limit})).all()
    return [Recoverable(r.job_id, r.node, r.leased is not None) for r in rows]


async def stream_heads(conn: AsyncConnection, job_ids: Sequence[str]) -> dict[str, int]:
    """The last sequence of each job that still exists (a deleted job is absent)."""
    heads: dict[str, int] = {}
    for start in range(0, len(job_ids), _HEADS_PAGE):
        values = {"b_job_ids": id_list(conn.dialect.name, job_ids[start : start + _HEADS_PAGE])}
        heads.update({r["job_id"]: r["last_sequence"] for r in await _HEADS.rows(conn, values)})
    return heads
