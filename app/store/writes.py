"""The writes that end a job command's transaction: projection rows, lease clean-up, events last.

On Postgres they are one statement: the jobs and agents INSERTs and UPDATEs and the lease
DELETEs are data-modifying CTEs of the events INSERT (event_store.APPEND_PG, which takes the
positions), every row set bound as one array per column. A commit is then BEGIN, its loads, this
statement and COMMIT; the writes had been four to six round trips more, and a busy node's
commands wait on each other's round trips (group commit). The position counter is still the
last lock taken (its UPDATE is part of the final statement). On SQLite the same writes run one
after the other; its write transactions are serialised anyway.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ARRAY, and_, any_, bindparam, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain.events import Event
from app.domain.projection import JobProjection
from app.store import event_store, leases, projector
from app.store.database import Prepared
from app.store.projector import AGENT_FIELDS, JOB_FIELDS
from app.store.tables import agents, executor_leases, job_leases, jobs

Changes = list[tuple[JobProjection | None, JobProjection]]


def _rows_of(table: Any, columns: tuple[str, ...], prefix: str) -> Any:
    """`unnest(:prefix_col1, ...) AS anon(col1, ...)`: a row set bound as one array per column."""
    arrays = [bindparam(f"{prefix}_{c}", type_=ARRAY(table.c[c].type)) for c in columns]
    return func.unnest(*arrays).table_valued(*columns).render_derived()


def _statement() -> Any:
    new_jobs = _rows_of(jobs, JOB_FIELDS, "nj")
    new_agents = _rows_of(agents, AGENT_FIELDS, "na")
    job_updates = _rows_of(jobs, JOB_FIELDS, "uj")
    agent_updates = _rows_of(agents, AGENT_FIELDS, "ua")
    dropped = bindparam("b_dropped", type_=ARRAY(job_leases.c.job_id.type))
    return event_store.APPEND_PG.add_cte(
        insert(jobs).from_select(list(JOB_FIELDS), select(*[new_jobs.c[c] for c in JOB_FIELDS])).cte("new_jobs"),
        insert(agents)
        .from_select(list(AGENT_FIELDS), select(*[new_agents.c[c] for c in AGENT_FIELDS]))
        .cte("new_agents"),
        update(jobs)
        .where(jobs.c.job_id == job_updates.c.job_id)
        .values({c: job_updates.c[c] for c in JOB_FIELDS if c != "job_id"})
        .cte("job_updates"),
        update(agents)
        .where(and_(agents.c.job_id == agent_updates.c.job_id, agents.c.agent_id == agent_updates.c.agent_id))
        .values({c: agent_updates.c[c] for c in AGENT_FIELDS if c not in ("job_id", "agent_id")})
        .cte("agent_updates"),
        delete(job_leases).where(job_leases.c.job_id == any_(dropped)).cte("dropped_job_leases"),
        delete(executor_leases).where(executor_leases.c.job_id == any_(dropped)).cte("dropped_executor_leases"),
    )


_WRITE_PG = Prepared(_statement())


def _arrays(prefix: str, columns: tuple[str, ...], rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    return {f"{prefix}_{c}": [row[c] for row in rows] for c in columns}


async def finish(conn: AsyncConnection, changes: Changes, ended: list[str], sealed: list[Event]) -> list[Event]:
    """Save the projection `changes`, drop the lease rows of the `ended` jobs and append `sealed`
    (non-empty) as the last work of the transaction; return the recorded events.

    Raises ConcurrencyConflict when a key is taken (a job id, an Idempotency-Key, a sequence).
    """
    if conn.dialect.name != "postgresql":
        try:
            await projector.save_many(conn, changes)
        except IntegrityError as exc:
            raise event_store.ConcurrencyConflict(sealed[0].stream_id) from exc
        await leases.drop_jobs(conn, ended)
        return await event_store.insert_sealed(conn, sealed)
    rows = projector.changed_rows(changes)
    values = {
        **_arrays("nj", JOB_FIELDS, rows.new_jobs),
        **_arrays("na", AGENT_FIELDS, rows.new_agents),
        **_arrays("uj", JOB_FIELDS, rows.job_updates),
        **_arrays("ua", AGENT_FIELDS, rows.agent_updates),
        "b_dropped": ended,
    }
    return await event_store.append_pg(conn, _WRITE_PG, sealed, values)
