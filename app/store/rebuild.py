"""Rebuild and verify the projections from the event log (DESIGN §2 invariant 1).

Both walk the log stream by stream in (stream_id, sequence) order with keyset pagination, so
memory stays bounded (a few chunks of streams), and fold with the same pure functions the
write path uses.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections import deque
from collections.abc import AsyncIterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain.bundle import project_bundle
from app.domain.events import Event
from app.domain.projection import JobProjection, build, fold
from app.store import bundles as bundle_rows
from app.store.database import Database, driver_fetch
from app.store.json_columns import parse_stored
from app.store.projector import agent_to_row, job_to_row
from app.store.tables import agents, bundles, jobs

BATCH = 5000


# The keyset condition is a row-value comparison: Postgres uses it as the index condition of
# the (stream_id, sequence) unique index. Spelled `stream_id > ? OR (stream_id = ? AND ...)` it is
# only a filter, and every page scanned the index from the start (quadratic in the log's length).
_SCAN = (
    'SELECT "position", stream_id, "sequence", event_id, "type", "timestamp", job_id, agent_id, payload, hash, hash_alg '
    'FROM events WHERE {kind} AND (stream_id, "sequence") > (?, ?) '
    'ORDER BY stream_id, "sequence" LIMIT ?'
)
_JOB_STREAMS = _SCAN.format(kind="job_id IS NOT NULL")
_BUNDLE_STREAMS = _SCAN.format(kind="stream_id LIKE 'bundle:%'")


RawRow = tuple[Any, ...]


async def _raw_streams(conn: AsyncConnection, *, job_streams: bool) -> AsyncIterator[tuple[str, list[RawRow]]]:
    """Yield (stream_id, rows) for every job stream (or every bundle stream), in stream order.

    A bulk scan: rows come straight from the driver as tuples (SQLAlchemy's row objects cost more
    than the fetch itself), keyset-paged on the (stream_id, sequence) unique index.
    """
    sql = _JOB_STREAMS if job_streams else _BUNDLE_STREAMS
    cursor: tuple[str, int] = ("", 0)
    current: str | None = None
    buffered: list[RawRow] = []
    while True:
        rows = await driver_fetch(conn, sql, (cursor[0], cursor[1], BATCH))
        if not rows:
            break
        for row in rows:
            if row[1] != current:
                if current is not None:
                    yield current, buffered
                current, buffered = row[1], []
            buffered.append(tuple(row))
        cursor = (rows[-1][1], rows[-1][2])
    if current is not None:
        yield current, buffered


def _decode(rows: list[RawRow]) -> list[Event]:
    loads = parse_stored
    return [
        build(Event, {
            "position": p, "stream_id": s, "sequence": q, "event_id": i, "type": t, "timestamp": ts, "job_id": j,
            "agent_id": a, "payload": loads(payload), "hash": h, "hash_alg": alg,
            "payload_json": None,
        })
        for p, s, q, i, t, ts, j, a, payload, h, alg in rows
    ]


async def _streams(conn: AsyncConnection, *, job_streams: bool) -> AsyncIterator[tuple[str, list[Event]]]:
    """Yield (stream_id, events) for every job stream (or every bundle stream), in stream order."""
    async for stream_id, rows in _raw_streams(conn, job_streams=job_streams):
        yield stream_id, _decode(rows)


_JOB_COLUMNS = [c.name for c in jobs.columns]
_AGENT_COLUMNS = [c.name for c in agents.columns]
Records = list[tuple[Any, ...]]


def _fold_rows(streams: list[list[RawRow]]) -> tuple[Records, Records]:
    """Decode and fold job streams into their `jobs` and `agents` rows as records, values in the
    tables' column order (runs in worker processes too: tuples pickle back smaller than dicts,
    and the process that writes them has nothing left to do but COPY)."""
    job_records: Records = []
    agent_records: Records = []
    for rows in streams:
        projection = fold(_decode(rows))
        assert projection is not None
        job_row, agents_of = _job_rows(projection, rows[0][0])
        job_records.append(tuple(job_row.get(c) for c in _JOB_COLUMNS))
        agent_records.extend(tuple(row.get(c) for c in _AGENT_COLUMNS) for row in agents_of)
    return job_records, agent_records


def _job_rows(projection: JobProjection, first_position: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    # submitted_position: the position of the stream's first event, its job_submitted (admission
    # and claim order, see event_store.insert_sealed).
    job_row = {**job_to_row(projection.job), "submitted_position": first_position}
    return job_row, [agent_to_row(a) for a in projection.agents.values()]


def _bundle_row(stream: list[Event]) -> dict[str, Any]:
    view: dict[str, Any] | None = None
    for event in stream:
        view = project_bundle(view, event)
    assert view is not None
    return bundle_rows.row_of(view["bundle_id"], view, stream[-1])


# A rebuild decodes and folds in worker processes (one per core, at most 4) once the log has
# proved longer than PARALLEL_AFTER events; a short log is folded in-process (no start-up cost).
PARALLEL_AFTER = 20_000
CHUNK_EVENTS = 5_000


async def rebuild(db: Database) -> int:
    """Drop every projection row and replay the log into them; return the events replayed."""
    replayed = 0
    workers = min(os.cpu_count() or 1, 4)
    pool: ProcessPoolExecutor | None = None
    pending: deque[asyncio.Future[tuple[Records, Records]]] = deque()
    loop = asyncio.get_running_loop()
    try:
        async with db.write() as conn:
            for table in (agents, jobs, bundles):
                await conn.execute(delete(table))
            chunk: list[list[RawRow]] = []
            chunk_events = 0

            async def fold_chunk() -> None:
                nonlocal pool, chunk, chunk_events
                if pool is None and workers > 1 and replayed > PARALLEL_AFTER:
                    pool = ProcessPoolExecutor(workers)
                if pool is None:
                    await _flush(conn, *_fold_rows(chunk))
                else:
                    pending.append(loop.run_in_executor(pool, _fold_rows, chunk))
                    while len(pending) > 2 * workers:
                        await _flush(conn, *await pending.popleft())
                chunk, chunk_events = [], 0

            async for _, rows in _raw_streams(conn, job_streams=True):
                replayed += len(rows)
                chunk.append(rows)
                chunk_events += len(rows)
                if chunk_events >= CHUNK_EVENTS:
                    await fold_chunk()
            if chunk:
                await fold_chunk()
            while pending:
                await _flush(conn, *await pending.popleft())
            async for _, stream in _streams(conn, job_streams=False):
                replayed += len(stream)
                await conn.execute(insert(bundles), [_bundle_row(stream)])
    finally:
        for future in pending:
            future.cancel()
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return replayed


async def _flush(conn: AsyncConnection, job_records: Records, agent_records: Records) -> None:
    if conn.dialect.name == "postgresql":
        # COPY: several times cheaper per row than an executemany INSERT.
        raw = (await conn.get_raw_connection()).driver_connection
        assert raw is not None
        for table, columns, records in (("jobs", _JOB_COLUMNS, job_records), ("agents", _AGENT_COLUMNS, agent_records)):
            if records:
                await raw.copy_records_to_table(table, records=records, columns=columns)
        return
    job_rows = [dict(zip(_JOB_COLUMNS, r, strict=True)) for r in job_records]
    agent_rows = [dict(zip(_AGENT_COLUMNS, r, strict=True)) for r in agent_records]
    for start in range(0, len(job_rows), 500):
        await conn.execute(insert(jobs), job_rows[start : start + 500])
    for start in range(0, len(agent_rows), 2000):
        await conn.execute(insert(agents), agent_rows[start : start + 2000])


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
            job_row, agent_rows = _job_rows(projection, stream[0].position)
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

