"""Deleting jobs (SPEC §11): which jobs a cleanup may delete, and every row of one job.

The decision (terminal or not, old enough) and the `jobs_cleaned` audit event belong to the
service (`app/service/cleanup.py`); the statements are here.
"""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain.canonical import format_ms
from app.domain.events import TERMINAL_STATUSES
from app.store import leases
from app.store.tables import agents, events, jobs


async def candidates(conn: AsyncConnection, *, include_live: bool, updated_by: int | None) -> list[str]:
    """Job ids in order: terminal ones (every one with `include_live`), last updated at or before `updated_by` ms."""
    query = select(jobs.c.job_id).order_by(jobs.c.job_id)
    if not include_live:
        query = query.where(jobs.c.status.in_(sorted(TERMINAL_STATUSES)))
    if updated_by is not None:
        query = query.where(jobs.c.updated_at <= format_ms(updated_by))
    return [r.job_id for r in await conn.execute(query)]


async def delete_job(conn: AsyncConnection, job_id: str) -> None:
    """Delete a job's events, projection rows and operational rows."""
    await conn.execute(delete(events).where(events.c.stream_id == job_id))
    await conn.execute(delete(agents).where(agents.c.job_id == job_id))
    await conn.execute(delete(jobs).where(jobs.c.job_id == job_id))
    await leases.drop_job(conn, job_id)
