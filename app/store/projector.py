"""Persistence of the job/agent projections computed by `app.domain.projection`."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import fields
from typing import Any

from sqlalchemy import and_, bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain.canonical import canonical_json
from app.domain.projection import AgentView, JobProjection, JobView, build
from app.store.database import Prepared
from app.store.json_columns import parse_stored
from app.store.tables import agents, any_of, id_list, jobs, prepared

_JOB_FIELDS = tuple(f.name for f in fields(JobView))
_AGENT_FIELDS = tuple(f.name for f in fields(AgentView))
_JOB_JSON = frozenset({"root_agent_ids", "result", "nodes", "manifest_ref", "bundle", "sandbox_names"})
_JOB_TUPLES = frozenset({"root_agent_ids", "nodes", "sandbox_names"})
_AGENT_JSON = frozenset({"state"})


def _dump(value: Any) -> str | None:
    return None if value is None else canonical_json(list(value) if isinstance(value, tuple) else value)


def job_to_row(job: JobView) -> dict[str, Any]:
    """The `jobs` row of a JobView."""
    return {f: (_dump(getattr(job, f)) if f in _JOB_JSON else getattr(job, f)) for f in _JOB_FIELDS}


def agent_to_row(agent: AgentView) -> dict[str, Any]:
    """The `agents` row of an AgentView."""
    return {f: (_dump(getattr(agent, f)) if f in _AGENT_JSON else getattr(agent, f)) for f in _AGENT_FIELDS}


def _load(value: str | None) -> Any:
    return None if value is None else parse_stored(value)


def row_to_job(row: Any) -> JobView:
    """The JobView of a `jobs` row (indexable by column name)."""
    values: dict[str, Any] = {}
    for f in _JOB_FIELDS:
        raw = row[f]
        if f in _JOB_JSON:
            raw = _load(raw)
            if f in _JOB_TUPLES:
                raw = tuple(raw)
        values[f] = raw
    values["daemon"] = bool(values["daemon"])
    return build(JobView, values)


def row_to_agent(row: Any) -> AgentView:
    """The AgentView of an `agents` row (indexable by column name)."""
    values = {f: (_load(row[f]) if f in _AGENT_JSON else row[f]) for f in _AGENT_FIELDS}
    return build(AgentView, values)


# Built once: a statement constructed per call costs SQLAlchemy its construction, coercions and a
# fresh cache key every time (in a profiled 200-executor fan-out, `save` alone, which built its
# UPDATEs per call, was 13 % of the node's CPU).
SELECT_JOB = select(jobs).where(jobs.c.job_id == bindparam("b_job_id"))
JOB_ROW = Prepared(SELECT_JOB)  # the job's row (b_job_id); also the read model's GET /jobs/{id}
_LOAD_JOB_FOR_UPDATE = Prepared(SELECT_JOB.with_for_update())  # FOR UPDATE: Postgres only (SQLite drops it)
_LOAD_AGENTS = prepared(
    lambda d: select(agents).where(
        and_(agents.c.job_id == bindparam("b_job_id"), any_of(agents.c.agent_id, "b_agent_ids", d))
    )
)
_LOAD_JOBS = prepared(lambda d: select(jobs).where(any_of(jobs.c.job_id, "b_job_ids", d)).order_by(jobs.c.job_id))
_LOAD_JOBS_FOR_UPDATE = prepared(
    lambda d: select(jobs).where(any_of(jobs.c.job_id, "b_job_ids", d)).order_by(jobs.c.job_id).with_for_update()
)
_LOAD_AGENTS_OF = prepared(
    lambda d: select(agents).where(
        and_(any_of(agents.c.job_id, "b_job_ids", d), any_of(agents.c.agent_id, "b_agent_ids", d))
    )
)


async def load_job(conn: AsyncConnection, job_id: str, *, lock: bool) -> JobView | None:
    """Load a job row; with `lock`, hold its row lock (Postgres) until the transaction ends."""
    row = await (_LOAD_JOB_FOR_UPDATE if lock else JOB_ROW).first(conn, {"b_job_id": job_id})
    return None if row is None else row_to_job(row)


async def load_agents(conn: AsyncConnection, job_id: str, agent_ids: Iterable[str]) -> dict[str, AgentView]:
    """Load the named agent rows of a job (missing ids are left out)."""
    wanted = sorted(set(agent_ids))
    if not wanted:
        return {}
    result: dict[str, AgentView] = {}
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        values = {"b_job_id": job_id, "b_agent_ids": id_list(conn.dialect.name, chunk)}
        result.update({r["agent_id"]: row_to_agent(r) for r in await _LOAD_AGENTS.rows(conn, values)})
    return result


async def load_jobs(conn: AsyncConnection, job_ids: Iterable[str], *, lock: bool) -> dict[str, JobView]:
    """Load several job rows in one query; with `lock`, hold their row locks (Postgres), taken in job_id order."""
    wanted = sorted(set(job_ids))
    found: dict[str, JobView] = {}
    query = _LOAD_JOBS_FOR_UPDATE if lock else _LOAD_JOBS
    for start in range(0, len(wanted), 500):
        rows = await query.rows(conn, {"b_job_ids": id_list(conn.dialect.name, wanted[start : start + 500])})
        found.update((r["job_id"], row_to_job(r)) for r in rows)
    return found


async def load_agents_of(conn: AsyncConnection, wanted: dict[str, set[str]]) -> dict[str, dict[str, AgentView]]:
    """Load the named agent rows of several jobs in one query: job_id → agent_id → AgentView."""
    job_ids = sorted(j for j, ids in wanted.items() if ids)
    agent_ids = sorted({a for j in job_ids for a in wanted[j]})
    result: dict[str, dict[str, AgentView]] = {}
    if not job_ids or len(job_ids) > 500 or len(agent_ids) > 500:
        for job_id in job_ids:
            result[job_id] = await load_agents(conn, job_id, wanted[job_id])
        return result
    dialect = conn.dialect.name
    values = {"b_job_ids": id_list(dialect, job_ids), "b_agent_ids": id_list(dialect, agent_ids)}
    for r in await _LOAD_AGENTS_OF.rows(conn, values):
        if r["agent_id"] in wanted[r["job_id"]]:
            result.setdefault(r["job_id"], {})[r["agent_id"]] = row_to_agent(r)
    return result


_UPDATE_JOB = Prepared(
    update(jobs)
    .where(jobs.c.job_id == bindparam("b_job_id"))
    .values({f: bindparam(f) for f in _JOB_FIELDS if f != "job_id"})
)
_UPDATE_AGENT = Prepared(
    update(agents)
    .where(and_(agents.c.job_id == bindparam("b_job_id"), agents.c.agent_id == bindparam("b_agent_id")))
    .values({f: bindparam(f) for f in _AGENT_FIELDS if f not in ("job_id", "agent_id")})
)
_INSERT_JOB = Prepared(insert(jobs).values({f: bindparam(f) for f in _JOB_FIELDS}))
_INSERT_AGENT = Prepared(insert(agents).values({f: bindparam(f) for f in _AGENT_FIELDS}))


async def save_many(conn: AsyncConnection, changes: list[tuple[JobProjection | None, JobProjection]]) -> None:
    """`save` for several jobs at once: one INSERT per table for new jobs, one UPDATE each (executemany)."""
    new_jobs: list[dict[str, Any]] = []
    new_agents: list[dict[str, Any]] = []
    job_updates: list[dict[str, Any]] = []
    agent_updates: list[dict[str, Any]] = []
    for before, after in changes:
        if before is None:
            new_jobs.append(job_to_row(after.job))
            new_agents.extend(agent_to_row(a) for a in after.agents.values())
            continue
        row = job_to_row(after.job)
        row["b_job_id"] = row.pop("job_id")
        job_updates.append(row)
        for agent_id, agent in after.agents.items():
            if before.agents.get(agent_id) is agent:
                continue
            values = agent_to_row(agent)
            values["b_job_id"] = values.pop("job_id")
            values["b_agent_id"] = values.pop("agent_id")
            agent_updates.append(values)
    await _INSERT_JOB.execute_many(conn, new_jobs)
    for start in range(0, len(new_agents), 1000):
        await _INSERT_AGENT.execute_many(conn, new_agents[start : start + 1000])
    await _UPDATE_JOB.execute_many(conn, job_updates)
    await _UPDATE_AGENT.execute_many(conn, agent_updates)


async def save(conn: AsyncConnection, before: JobProjection | None, after: JobProjection) -> None:
    """Write what changed between two projections of one job."""
    await save_many(conn, [(before, after)])
