"""Rebuild and verify the projections from the event log (DESIGN §2 invariant 1).

Both walk the log stream by stream in (stream_id, sequence) order with keyset pagination, so
memory stays bounded by one job's agents, and fold with the same pure functions the write
path uses.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import and_, delete, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain.bundle import project_bundle
from app.domain.canonical import canonical_json
from app.domain.events import Event
from app.domain.projection import JobProjection, fold
from app.store.database import Database
from app.store.event_store import row_to_event
from app.store.projector import agent_to_row, job_to_row
from app.store.tables import agents, bundles, events, jobs

BATCH = 5000


async def _streams(conn: AsyncConnection, *, job_streams: bool) -> AsyncIterator[tuple[str, list[Event]]]:
    """Yield (stream_id, events) for every job stream (or every bundle stream), in stream order."""
    kind = events.c.job_id.is_not(None) if job_streams else events.c.stream_id.like("bundle:%")
    cursor: tuple[str, int] | None = None
    current: str | None = None
    buffered: list[Event] = []
    while True:
        query = select(events).where(kind).order_by(events.c.stream_id, events.c.sequence).limit(BATCH)
        if cursor is not None:
            query = query.where(
                or_(
                    events.c.stream_id > cursor[0],
                    and_(events.c.stream_id == cursor[0], events.c.sequence > cursor[1]),
                )
            )
        rows = (await conn.execute(query)).all()
        if not rows:
            break
        for row in rows:
            if row.stream_id != current:
                if current is not None:
                    yield current, buffered
                current, buffered = row.stream_id, []
            buffered.append(row_to_event(row))
        cursor = (rows[-1].stream_id, rows[-1].sequence)
    if current is not None:
        yield current, buffered


def _job_rows(projection: JobProjection) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    return job_to_row(projection.job), [agent_to_row(a) for a in projection.agents.values()]


def _bundle_row(stream: list[Event]) -> dict[str, Any]:
    view: dict[str, Any] | None = None
    for event in stream:
        view = project_bundle(view, event)
    assert view is not None
    last = stream[-1]
    return {
        "bundle_id": view["bundle_id"],
        "view": canonical_json(view),
        "last_sequence": last.sequence,
        "last_hash": last.hash,
        "last_timestamp": last.timestamp,
    }


async def rebuild(db: Database) -> int:
    """Drop every projection row and replay the log into them; return the events replayed."""
    replayed = 0
    async with db.write() as conn:
        for table in (agents, jobs, bundles):
            await conn.execute(delete(table))
        job_batch: list[dict[str, Any]] = []
        agent_batch: list[dict[str, Any]] = []
        async for _, stream in _streams(conn, job_streams=True):
            replayed += len(stream)
            projection = fold(stream)
            assert projection is not None
            job_row, agent_rows = _job_rows(projection)
            job_batch.append(job_row)
            agent_batch.extend(agent_rows)
            if len(agent_batch) >= 2000 or len(job_batch) >= 500:
                await _flush(conn, job_batch, agent_batch)
        await _flush(conn, job_batch, agent_batch)
        async for _, stream in _streams(conn, job_streams=False):
            replayed += len(stream)
            await conn.execute(insert(bundles), [_bundle_row(stream)])
    return replayed


async def _flush(conn: AsyncConnection, job_batch: list[dict[str, Any]], agent_batch: list[dict[str, Any]]) -> None:
    if job_batch:
        await conn.execute(insert(jobs), job_batch)
    if agent_batch:
        await conn.execute(insert(agents), agent_batch)
    job_batch.clear()
    agent_batch.clear()


def _diff(label: str, live: dict[str, Any] | None, rebuilt: dict[str, Any] | None) -> list[str]:
    if live is None:
        return [f"{label}: missing from the live projection"]
    if rebuilt is None:
        return [f"{label}: present in the live projection but not derivable from events"]
    return [
        f"{label}.{key}: live={json.dumps(live.get(key))} rebuilt={json.dumps(rebuilt[key])}"
        for key in rebuilt
        if _norm(live.get(key)) != _norm(rebuilt[key])
    ]


def _norm(value: Any) -> Any:
    return bool(value) if isinstance(value, bool) else value


async def verify(db: Database) -> list[str]:
    """Fold the log into scratch rows and diff them against the live projections."""
    differences: list[str] = []
    seen_jobs: set[str] = set()
    async with db.read() as conn:
        async for job_id, stream in _streams(conn, job_streams=True):
            seen_jobs.add(job_id)
            projection = fold(stream)
            assert projection is not None
            job_row, agent_rows = _job_rows(projection)
            live_job = (await conn.execute(select(jobs).where(jobs.c.job_id == job_id))).first()
            differences += _diff(f"jobs[{job_id}]", None if live_job is None else dict(live_job._mapping), job_row)
            live_agents = {
                r.agent_id: dict(r._mapping)
                for r in await conn.execute(select(agents).where(agents.c.job_id == job_id))
            }
            for row in agent_rows:
                differences += _diff(f"agents[{job_id}/{row['agent_id']}]", live_agents.pop(row["agent_id"], None), row)
            differences += [f"agents[{job_id}/{a}]: present in the live projection but not derivable from events" for a in live_agents]
        for job_row_id in (await conn.execute(select(jobs.c.job_id))).scalars():
            if job_row_id not in seen_jobs:
                differences.append(f"jobs[{job_row_id}]: present in the live projection but not derivable from events")
        seen_bundles: set[str] = set()
        async for _, stream in _streams(conn, job_streams=False):
            rebuilt = _bundle_row(stream)
            seen_bundles.add(rebuilt["bundle_id"])
            live = (await conn.execute(select(bundles).where(bundles.c.bundle_id == rebuilt["bundle_id"]))).first()
            differences += _diff(f"bundles[{rebuilt['bundle_id']}]", None if live is None else dict(live._mapping), rebuilt)
        for bundle_id in (await conn.execute(select(bundles.c.bundle_id))).scalars():
            if bundle_id not in seen_bundles:
                differences.append(f"bundles[{bundle_id}]: present in the live projection but not derivable from events")
    return differences

