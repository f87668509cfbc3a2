"""Job leases with fencing tokens (DESIGN §2 invariant 8): claim, take over, renew, release, check.

Also the `executor_leases` mirror of a node's executor pool requests and grants (SPEC §7.6).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import ARRAY, and_, bindparam, delete, false, func, insert, literal, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from app.store.database import Prepared
from app.store.tables import any_of, executor_leases, id_list, in_list, job_leases, prepared


@dataclass(frozen=True)
class Fence:
    """The lease a node holds on a job: its incarnation and the fencing token it took."""

    incarnation: str
    token: int


@dataclass(frozen=True)
class TakenLease:
    """A lease just taken over from an expired or released one."""

    fence: Fence
    from_node: str
    released: bool


class LeaseLost(Exception):
    """The node no longer holds the job's lease: it must stop the job without writing."""


_LEASE_ROWS_FOR_SHARE = prepared(
    lambda d: select(job_leases)
    .where(any_of(job_leases.c.job_id, "b_job_ids", d))
    .order_by(job_leases.c.job_id)
    .with_for_update(read=True)
)
# A terminal commit drops its job's lease and executor lease rows (see drop_jobs); on Postgres in
# one statement, the job lease rows in a data-modifying CTE.
_DROP_JOB_LEASES = prepared(lambda d: delete(job_leases).where(any_of(job_leases.c.job_id, "b_job_ids", d)))
_DROP_EXECUTOR_LEASES = prepared(
    lambda d: delete(executor_leases).where(any_of(executor_leases.c.job_id, "b_job_ids", d))
)
_DROP_BOTH_PG = Prepared(
    _DROP_EXECUTOR_LEASES.statement.add_cte(_DROP_JOB_LEASES.statement.cte("dropped_job_leases"))
)

def claim_insert(job_id: Any) -> Any:
    """On Postgres: INSERT a first lease (token 1) for each `job_id` (a column or a set-returning
    expression) that has none, RETURNING the job ids it took; binds `b_node`, `b_incarnation`,
    `b_expires`."""
    return (
        pg_insert(job_leases)
        .from_select(
            ["job_id", "node", "incarnation", "token", "expires_at_ms", "released"],
            select(
                job_id,
                bindparam("b_node", type_=job_leases.c.node.type),
                bindparam("b_incarnation", type_=job_leases.c.incarnation.type),
                literal(1, job_leases.c.token.type),
                bindparam("b_expires", type_=job_leases.c.expires_at_ms.type),
                false(),
            ),
        )
        .on_conflict_do_nothing(index_elements=[job_leases.c.job_id])
        .returning(job_leases.c.job_id)
    )


# Built once (a busy node claims on every finished job); on SQLite the claim is a VALUES list.
_CLAIM_PG = Prepared(claim_insert(func.unnest(bindparam("b_job_ids", type_=ARRAY(job_leases.c.job_id.type)))))


async def lease_rows(conn: AsyncConnection, job_ids: list[str]) -> dict[str, Any]:
    """The lease rows of several jobs, read FOR SHARE on Postgres, in job_id order.

    FOR SHARE: a take-over (an UPDATE of that row) waits until this transaction ends, so a node
    can never commit a step after another node took the job (see `check_fence_row`).
    """
    wanted = sorted(set(job_ids))
    found: dict[str, Any] = {}
    for start in range(0, len(wanted), 500):
        values = {"b_job_ids": id_list(conn.dialect.name, wanted[start : start + 500])}
        found.update((r["job_id"], r) for r in await _LEASE_ROWS_FOR_SHARE.rows(conn, values))
    return found


def check_fence_row(row: Any, job_id: str, fence: Fence, now_ms: int) -> None:
    """Raise LeaseLost unless `row` (read by `lease_rows` in this transaction) is `fence`: current, unexpired, unreleased."""
    if (
        row is None
        or row["incarnation"] != fence.incarnation
        or row["token"] != fence.token
        or row["released"]
        or row["expires_at_ms"] <= now_ms
    ):
        raise LeaseLost(job_id)


async def drop_jobs(conn: AsyncConnection, job_ids: list[str]) -> None:
    """`drop_job` for several jobs."""
    for start in range(0, len(job_ids), 500):
        values = {"b_job_ids": id_list(conn.dialect.name, job_ids[start : start + 500])}
        drops = [_DROP_BOTH_PG] if conn.dialect.name == "postgresql" else [_DROP_JOB_LEASES, _DROP_EXECUTOR_LEASES]
        for drop in drops:
            await drop.execute_many(conn, [values])


async def claim_many(
    conn: AsyncConnection, job_ids: list[str], *, node: str, incarnation: str, now_ms: int, ttl_ms: int
) -> dict[str, Fence]:
    """`claim` for several jobs in one statement; returns the fences of the jobs that had no lease."""
    if not job_ids:
        return {}
    if conn.dialect.name == "postgresql":
        values = {"b_job_ids": job_ids, "b_node": node, "b_incarnation": incarnation, "b_expires": now_ms + ttl_ms}
        taken = {r["job_id"] for r in await _CLAIM_PG.rows(conn, values)}
    else:
        rows = [
            {
                "job_id": job_id,
                "node": node,
                "incarnation": incarnation,
                "token": 1,
                "expires_at_ms": now_ms + ttl_ms,
                "released": False,
            }
            for job_id in job_ids
        ]
        statement = (
            sqlite_insert(job_leases)
            .values(rows)
            .on_conflict_do_nothing(index_elements=[job_leases.c.job_id])
            .returning(job_leases.c.job_id)
        )
        taken = set((await conn.execute(statement)).scalars())
    return {job_id: Fence(incarnation, 1) for job_id in job_ids if job_id in taken}


async def claim(
    conn: AsyncConnection, job_id: str, *, node: str, incarnation: str, now_ms: int, ttl_ms: int
) -> Fence | None:
    """Take the lease of a job that has none; None if another node holds it."""
    fences = await claim_many(conn, [job_id], node=node, incarnation=incarnation, now_ms=now_ms, ttl_ms=ttl_ms)
    return fences.get(job_id)


async def take_over(
    conn: AsyncConnection, job_id: str, *, node: str, incarnation: str, now_ms: int, ttl_ms: int
) -> TakenLease | None:
    """Take an expired or released lease with a new fencing token; None if it is still held."""
    current = (
        await conn.execute(select(job_leases).where(job_leases.c.job_id == job_id))
    ).first()
    if current is None or not (current.released or current.expires_at_ms <= now_ms):
        return None
    result = await conn.execute(
        update(job_leases)
        .where(
            and_(
                job_leases.c.job_id == job_id,
                job_leases.c.token == current.token,
                or_(job_leases.c.released.is_(True), job_leases.c.expires_at_ms <= now_ms),
            )
        )
        .values(
            node=node,
            incarnation=incarnation,
            token=current.token + 1,
            expires_at_ms=now_ms + ttl_ms,
            released=False,
        )
        .returning(job_leases.c.token)
    )
    row = result.first()
    if row is None:
        return None
    return TakenLease(Fence(incarnation, row.token), current.node, bool(current.released))


async def renew_all(conn: AsyncConnection, incarnation: str, *, now_ms: int, ttl_ms: int) -> None:
    """Extend every unexpired, unreleased lease of this incarnation."""
    await conn.execute(
        update(job_leases)
        .where(
            and_(
                job_leases.c.incarnation == incarnation,
                job_leases.c.released.is_(False),
                job_leases.c.expires_at_ms > now_ms,
            )
        )
        .values(expires_at_ms=now_ms + ttl_ms)
    )


async def held_tokens(conn: AsyncConnection, incarnation: str, now_ms: int) -> dict[str, int]:
    """job_id → token of every lease this incarnation still validly holds."""
    rows = await conn.execute(
        select(job_leases.c.job_id, job_leases.c.token).where(
            and_(
                job_leases.c.incarnation == incarnation,
                job_leases.c.released.is_(False),
                job_leases.c.expires_at_ms > now_ms,
            )
        )
    )
    return {r.job_id: r.token for r in rows}


async def release(conn: AsyncConnection, job_id: str, fence: Fence, *, now_ms: int, graceful: bool) -> None:
    """Give a lease up: mark it released (graceful shutdown) or delete it (job finished)."""
    where = and_(
        job_leases.c.job_id == job_id,
        job_leases.c.incarnation == fence.incarnation,
        job_leases.c.token == fence.token,
    )
    if graceful:
        await conn.execute(update(job_leases).where(where).values(released=True, expires_at_ms=now_ms))
    else:
        await conn.execute(delete(job_leases).where(where))


async def expire(conn: AsyncConnection, job_id: str, fence: Fence, now_ms: int) -> None:
    """Let a lease lapse now (keeping its released flag) so that any node may recover the job."""
    await conn.execute(
        update(job_leases)
        .where(
            and_(
                job_leases.c.job_id == job_id,
                job_leases.c.incarnation == fence.incarnation,
                job_leases.c.token == fence.token,
            )
        )
        .values(expires_at_ms=now_ms)
    )


async def drop_job(conn: AsyncConnection, job_id: str) -> None:
    """Remove every operational row of a job (terminal event or cleanup)."""
    await drop_jobs(conn, [job_id])


async def drop_executor_leases_of(conn: AsyncConnection, job_id: str, incarnation: str) -> None:
    """Remove the executor lease rows one node incarnation holds for a job (it stopped running it)."""
    await conn.execute(
        delete(executor_leases).where(
            and_(executor_leases.c.job_id == job_id, executor_leases.c.incarnation == incarnation)
        )
    )


async def renew_owned(
    conn: AsyncConnection, incarnation: str, job_ids: list[str], *, now_ms: int, ttl_ms: int
) -> None:
    """Extend the leases of the jobs this incarnation is running; let every other lease of it lapse.

    A lease whose job has no runner here (a bootstrap or recovery that failed half-way) must not
    be kept alive by the heartbeat, or the job would never be claimed or recovered again.
    """
    mine = and_(
        job_leases.c.incarnation == incarnation,
        job_leases.c.released.is_(False),
        job_leases.c.expires_at_ms > now_ms,
    )
    if conn.dialect.name == "postgresql":
        # Lock this incarnation's lease rows in job_id order before updating them. A batch of
        # steps reads its jobs' lease rows FOR SHARE in job_id order (`lease_rows`); an UPDATE
        # locks in whatever order its scan meets the rows, and the two deadlocked under load.
        await conn.execute(select(job_leases.c.job_id).where(mine).order_by(job_leases.c.job_id).with_for_update())
    owned = sorted(set(job_ids))
    for start in range(0, len(owned), 500):
        chunk = owned[start : start + 500]
        await conn.execute(
            update(job_leases).where(and_(mine, in_list(job_leases.c.job_id, chunk))).values(expires_at_ms=now_ms + ttl_ms)
        )
    orphaned = (await conn.execute(select(job_leases.c.job_id).where(mine))).scalars().all()
    stale = sorted(set(orphaned) - set(owned))
    for start in range(0, len(stale), 500):
        await conn.execute(
            update(job_leases)
            .where(and_(mine, in_list(job_leases.c.job_id, stale[start : start + 500])))
            .values(expires_at_ms=now_ms)
        )


async def release_all(conn: AsyncConnection, incarnation: str, now_ms: int) -> int:
    """Graceful shutdown: mark every lease of this incarnation released (SPEC §10.4); returns how many."""
    result = await conn.execute(
        update(job_leases)
        .where(and_(job_leases.c.incarnation == incarnation, job_leases.c.released.is_(False)))
        .values(released=True, expires_at_ms=now_ms)
    )
    return int(result.rowcount or 0)


class ExecutorLeaseState(Protocol):
    """The newest state of one executor pool request or grant, as a node's pools report it."""

    @property
    def lease_id(self) -> str: ...
    @property
    def pool(self) -> str: ...
    @property
    def slots(self) -> int: ...
    @property
    def state(self) -> str: ...  # queued, held or removed
    @property
    def requested_at_ms(self) -> int: ...
    @property
    def metadata(self) -> Mapping[str, Any]: ...


async def mirror_executor_leases(
    conn: AsyncConnection, rows: Iterable[ExecutorLeaseState], *, node: str, incarnation: str
) -> None:
    """Make `executor_leases` show each lease's state: `removed` ones deleted, the others updated or inserted."""
    rows = list(rows)
    removed = sorted(r.lease_id for r in rows if r.state == "removed")
    if removed:
        await conn.execute(delete(executor_leases).where(in_list(executor_leases.c.lease_id, removed)))
    for row in rows:
        if row.state != "removed":
            await _mirror_one(conn, row, node=node, incarnation=incarnation)


async def _mirror_one(conn: AsyncConnection, row: ExecutorLeaseState, *, node: str, incarnation: str) -> None:
    meta = row.metadata
    where = executor_leases.c.lease_id == row.lease_id
    done = await conn.execute(update(executor_leases).where(where).values(state=row.state))
    if done.rowcount == 0:
        await conn.execute(
            insert(executor_leases).values(
                lease_id=row.lease_id, node=node, incarnation=incarnation,
                job_id=meta.get("job_id", ""), agent_id=meta.get("agent_id", ""), pool=row.pool,
                slots=row.slots, state=row.state, requested_at_ms=row.requested_at_ms,
            )
        )
