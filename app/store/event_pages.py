"""Pages of committed events as the API serves them (SPEC §2.14, §2.14a): one job's events after a
sequence, every job's events after a global position, and whether a job's stream is over.

Each call reads on its own read connection, so a followed stream holds no connection between polls.
Rows are `events` rows with the payload still its stored JSON text (see `event_store.api_record`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.store import read_model
from app.store.database import Database
from app.store.event_store import read_job_event_rows, read_stream_rows

# Cursors past the largest storable sequence/position match nothing; clamping keeps them
# inside the database integer types (Postgres INTEGER sequences, BIGINT positions).
MAX_SEQUENCE = 2**31 - 1
MAX_POSITION = 2**63 - 1


@dataclass(frozen=True)
class JobPage:
    """Events of one job after a cursor, and whether they reach the end of its (terminal) stream."""

    events: list[Any]
    finished: bool


async def job_exists(db: Database, job_id: str) -> bool:
    """True while the job has a stream (it was submitted and not cleaned up)."""
    async with db.read() as conn:
        return await read_model.stream_tip(conn, job_id) is not None


async def job_events_after(db: Database, job_id: str, after: int, limit: int | None) -> JobPage | None:
    """The job's events after sequence `after` (at most `limit`, all when None); None for no such job.

    `finished` when the job is terminal and the page ends at its last event (the terminal event
    is always the last of a stream).
    """
    async with db.read() as conn:
        tip = await read_model.stream_tip(conn, job_id)
        if tip is None:
            return None
        rows = await read_stream_rows(conn, job_id, after=min(after, MAX_SEQUENCE), limit=limit)
    last = rows[-1]["sequence"] if rows else after
    return JobPage(rows, tip.terminal and last >= tip.last_sequence)


async def events_after(db: Database, after: int, limit: int | None) -> list[Any]:
    """Every job's events after global position `after`, in position order (at most `limit`)."""
    async with db.read() as conn:
        return await read_job_event_rows(conn, after=min(after, MAX_POSITION), limit=limit)
