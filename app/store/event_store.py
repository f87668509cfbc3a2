"""The append-only event log: appends with optimistic concurrency and hash chain, and reads."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
from sqlalchemy import ARRAY, and_, bindparam, func, insert, select, true, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain import upcasting
from app.domain.canonical import (
    JCS,
    canonical_json,
    event_hash,
    format_ms,
    parse_ms,
    seal_payload,
)
from app.domain.events import Event, NewEvent
from app.domain.projection import build
from app.store.database import Prepared
from app.store.json_columns import parse_stored
from app.store.tables import any_of, event_positions, events, id_list, jobs, prepared


class ConcurrencyConflict(Exception):
    """Another writer appended to the stream (or took the key) first; re-read and re-decide."""


@dataclass(frozen=True)
class StreamHead:
    """Where a stream ends: the next append continues from here."""

    sequence: int = 0
    hash: str = ""
    timestamp: str | None = None


EMPTY = StreamHead()


def row_to_event(row: Any) -> Event:
    """Map an `events` row (indexable by column name) to an Event."""
    return build(Event, {
        "position": row["position"],
        "stream_id": row["stream_id"],
        "sequence": row["sequence"],
        "event_id": row["event_id"],
        "type": row["type"],
        "timestamp": row["timestamp"],
        "job_id": row["job_id"],
        "agent_id": row["agent_id"],
        "payload": parse_stored(row["payload"]),
        "hash": row["hash"],
        "hash_alg": row["hash_alg"],
        "payload_json": None,
    })


def _seal(
    stream_id: str, job_id: str | None, head: StreamHead, new_events: Sequence[NewEvent], now_ms: int
) -> list[Event]:
    # Timestamps never decrease within a stream (SPEC §1.3): a clock that stepped back is
    # raised to the previous event's timestamp.
    floor = parse_ms(head.timestamp) if head.timestamp else 0
    timestamp = format_ms(max(now_ms, floor))
    sealed: list[Event] = []
    prev = head.hash
    for offset, new in enumerate(new_events, start=1):
        event_id = str(uuid.uuid4())
        sequence = head.sequence + offset
        # The runtime goes on with the value the stored text reads back as (SPEC C.1.1: `1.0` is
        # `1` from here on), so a live step and a replayed one see the same payload.
        payload_json, payload = seal_payload(new.payload)
        digest = event_hash(
            prev_hash=prev,
            stream_id=stream_id,
            sequence=sequence,
            event_id=event_id,
            type_=new.type,
            timestamp=timestamp,
            agent_id=new.agent_id,
            payload=payload,
            payload_json=payload_json,
            hash_alg=JCS,
        )
        # Not through the frozen dataclass's __init__ (eleven object.__setattr__): see projection.build.
        sealed.append(
            build(
                Event,
                {
                    "position": 0, "stream_id": stream_id, "sequence": sequence, "event_id": event_id,
                    "type": new.type, "timestamp": timestamp, "job_id": job_id, "agent_id": new.agent_id,
                    "payload": payload, "hash": digest, "hash_alg": JCS, "payload_json": payload_json,
                },
            )
        )
        prev = digest
    return sealed


def seal(
    stream_id: str, job_id: str | None, head: StreamHead, new_events: Sequence[NewEvent], now_ms: int
) -> list[Event]:
    """Give decided events their sequence, id, timestamp and chain hash (position comes last)."""
    return _seal(stream_id, job_id, head, new_events, now_ms)


# Built once (every command runs them): see projector.SELECT_JOB.
_TAKE_POSITIONS = Prepared(
    update(event_positions)
    .where(event_positions.c.id == 1)
    .values(last_position=event_positions.c.last_position + bindparam("b_count"))
    .returning(event_positions.c.last_position)
)
_INSERT_EVENTS = Prepared(insert(events))
# A job's admission and claim order is the position of its `job_submitted` (sequence 1), known
# only once positions are taken (see insert_sealed).
_SUBMITTED_POSITION = Prepared(
    update(jobs).where(jobs.c.job_id == bindparam("b_job_id")).values(submitted_position=bindparam("b_position"))
)

# On Postgres both in one statement (one round trip less per commit): the counter's UPDATE as a
# CTE, the rows as one array per column, event i of the batch at position (last - count + i).
_ARRAY_COLUMNS = (
    "stream_id", "sequence", "event_id", "type", "timestamp", "job_id", "agent_id", "payload", "hash", "hash_alg",
    "schema_version", "command_id", "request_sha256",
)
_TAKEN = _TAKE_POSITIONS.statement.cte("taken")
_ROWS = (
    func.unnest(*[bindparam(f"b_{c}", type_=ARRAY(events.c[c].type)) for c in _ARRAY_COLUMNS])
    .table_valued(*_ARRAY_COLUMNS, with_ordinality="ord")
    .render_derived()
)
_INSERTED = (
    insert(events)
    .from_select(
        ["position", *_ARRAY_COLUMNS],
        select(_TAKEN.c.last_position - bindparam("b_count") + _ROWS.c.ord, *[_ROWS.c[c] for c in _ARRAY_COLUMNS])
        .select_from(_TAKEN.join(_ROWS, true())),
    )
    .returning(events.c.position, events.c.stream_id, events.c.sequence)
    .cte("inserted")
)
# ... and the jobs just submitted get their submission position in the same statement.
_SUBMITTED = (
    update(jobs)
    .where(and_(jobs.c.job_id == _INSERTED.c.stream_id, _INSERTED.c.sequence == 1))
    .values(submitted_position=_INSERTED.c.position)
    .cte("submitted")
)
_APPEND_PG = Prepared(select(_INSERTED.c.position).add_cte(_SUBMITTED))


async def insert_sealed(
    conn: AsyncConnection,
    sealed: Sequence[Event],
    command_ids: Sequence[str | None] | None = None,
    request_digests: Sequence[str | None] | None = None,
) -> list[Event]:
    """Insert sealed events with their global positions; raise ConcurrencyConflict on a taken key.

    `command_ids[i]` names the command whose first event `sealed[i]` is (None for the others):
    the unique index on (stream_id, command_id) refuses a command's second append to a stream,
    which surfaces here as ConcurrencyConflict (see `Service`, which then looks the id up).
    `request_digests[i]` is the digest of the keyed HTTP request behind it, if any. Jobs whose
    `job_submitted` is among the events get its position as their `submitted_position`.

    Call this as the LAST work of the transaction. Positions come from the counter row, whose
    row lock is held until COMMIT, so positions are handed out in commit order: a reader
    tailing `position > cursor` can never see a larger position commit before a smaller one
    (DESIGN §2 invariant 4). The window serialised by that lock is just this UPDATE, the INSERT
    and the COMMIT. (On SQLite, BEGIN IMMEDIATE serialises whole write transactions anyway.)
    """
    if not sealed:
        return []
    registry = upcasting.current_registry()
    payloads = [canonical_json(e.payload) if e.payload_json is None else e.payload_json for e in sealed]
    versions = [registry.current_version(e.type) for e in sealed]
    ids = list(command_ids) if command_ids is not None else [None] * len(sealed)
    digests = list(request_digests) if request_digests is not None else [None] * len(sealed)
    try:
        if conn.dialect.name == "postgresql":
            values: dict[str, Any] = {
                "b_count": len(sealed),
                "b_stream_id": [e.stream_id for e in sealed],
                "b_sequence": [e.sequence for e in sealed],
                "b_event_id": [e.event_id for e in sealed],
                "b_type": [e.type for e in sealed],
                "b_timestamp": [e.timestamp for e in sealed],
                "b_job_id": [e.job_id for e in sealed],
                "b_agent_id": [e.agent_id for e in sealed],
                "b_payload": payloads,
                "b_hash": [e.hash for e in sealed],
                "b_hash_alg": [e.hash_alg for e in sealed],
                "b_schema_version": versions,
                "b_command_id": ids,
                "b_request_sha256": digests,
            }
            first = min(r["position"] for r in await _APPEND_PG.rows(conn, values))
        else:
            taken = await _TAKE_POSITIONS.first(conn, {"b_count": len(sealed)})
            first = taken["last_position"] - len(sealed) + 1
            rows = [
                {
                    "position": first + i,
                    "stream_id": e.stream_id,
                    "sequence": e.sequence,
                    "event_id": e.event_id,
                    "type": e.type,
                    "timestamp": e.timestamp,
                    "job_id": e.job_id,
                    "agent_id": e.agent_id,
                    "payload": payload,
                    "hash": e.hash,
                    "hash_alg": e.hash_alg,
                    "schema_version": version,
                    "command_id": command_id,
                    "request_sha256": digest,
                }
                for i, (e, payload, version, command_id, digest) in enumerate(
                    zip(sealed, payloads, versions, ids, digests, strict=True)
                )
            ]
            await _INSERT_EVENTS.execute_many(conn, rows)
            submitted = [
                {"b_job_id": e.job_id, "b_position": first + i}
                for i, e in enumerate(sealed)
                if e.sequence == 1 and e.job_id is not None
            ]
            await _SUBMITTED_POSITION.execute_many(conn, submitted)
    except IntegrityError as exc:
        raise ConcurrencyConflict(sealed[0].stream_id) from exc
    # The sealed events with their positions (and without their JSON text, which the row now holds).
    return [build(Event, {**e.__dict__, "position": first + i, "payload_json": None}) for i, e in enumerate(sealed)]


async def stream_head(conn: AsyncConnection, stream_id: str) -> StreamHead:
    """Return the head of any stream by reading its last event."""
    row = (
        await conn.execute(
            select(events.c.sequence, events.c.hash, events.c.timestamp)
            .where(events.c.stream_id == stream_id)
            .order_by(events.c.sequence.desc())
            .limit(1)
        )
    ).first()
    return EMPTY if row is None else StreamHead(row.sequence, row.hash, row.timestamp)


async def stream_length(conn: AsyncConnection, stream_id: str) -> int:
    """How many events a stream holds (0 once a job's stream was cleaned up)."""
    return int((await conn.execute(select(func.count()).where(events.c.stream_id == stream_id))).scalar_one())


async def read_stream(
    conn: AsyncConnection, stream_id: str, *, after: int = 0, limit: int | None = None, newest_first: bool = False
) -> list[Event]:
    """Events of one stream with sequence > after, in sequence order (or newest first)."""
    rows = await read_stream_rows(conn, stream_id, after=after, limit=limit, newest_first=newest_first)
    return [row_to_event(r) for r in rows]


async def read_stream_rows(
    conn: AsyncConnection, stream_id: str, *, after: int = 0, limit: int | None = None, newest_first: bool = False
) -> list[Any]:
    """`read_stream` as `events` rows (indexable by column name), the payload still its stored JSON text
    (see `api_record`)."""
    query = _STREAM[(newest_first, limit is not None)]
    values = {"b_stream_id": stream_id, "b_after": after}
    if limit is not None:
        values["b_limit"] = limit
    return await query.rows(conn, values)


def _stream_query(*, newest_first: bool, limited: bool) -> Any:
    order = events.c.sequence.desc() if newest_first else events.c.sequence.asc()
    query = (
        select(events)
        .where(and_(events.c.stream_id == bindparam("b_stream_id"), events.c.sequence > bindparam("b_after")))
        .order_by(order)
    )
    return query.limit(bindparam("b_limit")) if limited else query


# Built once (GET /jobs/{id}, every event page, every runner sync): see projector.SELECT_JOB.
_STREAM = {
    (n, lim): Prepared(_stream_query(newest_first=n, limited=lim)) for n in (False, True) for lim in (False, True)
}


_STREAMS = prepared(
    lambda d: select(events)
    .where(any_of(events.c.stream_id, "b_stream_ids", d))
    .order_by(events.c.stream_id, events.c.sequence)
)


async def read_streams(conn: AsyncConnection, stream_ids: Sequence[str]) -> dict[str, list[Event]]:
    """The whole of several streams in one query: stream_id → events in sequence order."""
    found: dict[str, list[Event]] = {stream_id: [] for stream_id in stream_ids}
    if stream_ids:
        for row in await _STREAMS.rows(conn, {"b_stream_ids": id_list(conn.dialect.name, stream_ids)}):
            found[row["stream_id"]].append(row_to_event(row))
    return found


async def read_job_events(
    conn: AsyncConnection, *, after: int = 0, limit: int | None = None
) -> list[Event]:
    """Job-stream events with position > after, in position order (the global feed)."""
    return [row_to_event(r) for r in await read_job_event_rows(conn, after=after, limit=limit)]


async def read_job_event_rows(
    conn: AsyncConnection, *, after: int = 0, limit: int | None = None
) -> list[Any]:
    """`read_job_events` as `events` rows, the payload still its stored JSON text (see `api_record`)."""
    query = (
        select(events)
        .where(and_(events.c.position > after, events.c.job_id.is_not(None)))
        .order_by(events.c.position)
    )
    if limit is not None:
        query = query.limit(limit)
    return [r._mapping for r in await conn.execute(query)]


def api_record(row: Any) -> dict[str, Any]:
    """The SPEC §2.20 Event record of an `events` row (the keys of `Event.to_api`), payload as stored.

    The payload column holds the payload's canonical JSON; it goes out as `msgspec.Raw`, which
    the API's encoder (msgspec, Litestar's too) writes as is. Decoding it only to encode it again
    was most of the time of a large event page (50,000 events: 0.5 s of 0.9 s). The text goes in
    as the str (msgspec reads its UTF-8 form): encoding it to bytes first copied every payload.
    """
    return {
        "sequence": row["sequence"],
        "position": row["position"],
        "event_id": row["event_id"],
        "job_id": row["job_id"],
        "type": row["type"],
        "timestamp": row["timestamp"],
        "agent_id": row["agent_id"],
        "payload": msgspec.Raw(row["payload"]),
        "hash": row["hash"],
        "hash_alg": row["hash_alg"],
    }


@dataclass(frozen=True)
class CommittedCommand:
    """A command found in the log: the events it appended and the digest of its HTTP request."""

    events: list[Event]
    request_sha256: str | None


_COMMAND_HEADS = prepared(
    lambda d: select(events.c.command_id, events.c.sequence)
    .where(and_(events.c.stream_id == bindparam("b_stream_id"), any_of(events.c.command_id, "b_command_ids", d)))
)
_COMMAND_TAIL = Prepared(
    select(events)
    .where(and_(events.c.stream_id == bindparam("b_stream_id"), events.c.sequence >= bindparam("b_from")))
    .order_by(events.c.sequence)
    .limit(bindparam("b_limit"))
)
TAIL_PAGE = 500


async def committed_commands(
    conn: AsyncConnection, stream_id: str, command_ids: Sequence[str]
) -> dict[str, CommittedCommand]:
    """The commands among `command_ids` that appended to `stream_id`, each with its events.

    A command's events are contiguous in its stream (one command, one transaction, one run of
    sequences) and only its first event carries its id, so they run from that event up to the
    next event that starts another command (every command of a job stream carries an id).
    """
    wanted = sorted(set(command_ids))
    if not wanted:
        return {}
    values = {"b_stream_id": stream_id, "b_command_ids": id_list(conn.dialect.name, wanted)}
    heads = {r["command_id"]: r["sequence"] for r in await _COMMAND_HEADS.rows(conn, values)}
    found: dict[str, CommittedCommand] = {}
    for command_id, first in heads.items():
        rows: list[Any] = []
        start = first
        while True:
            page = await _COMMAND_TAIL.rows(conn, {"b_stream_id": stream_id, "b_from": start, "b_limit": TAIL_PAGE})
            ended = False
            for row in page:
                if row["sequence"] != first and row["command_id"] is not None:
                    ended = True
                    break
                rows.append(row)
            if ended or len(page) < TAIL_PAGE:
                break
            start = page[-1]["sequence"] + 1
        found[command_id] = CommittedCommand([row_to_event(r) for r in rows], rows[0]["request_sha256"])
    return found


async def commands_with_prefix(
    conn: AsyncConnection, stream_id: str, prefix: str
) -> list[tuple[Event, str | None]]:
    """The first events of the commands of `stream_id` whose id starts with `prefix`, in order,
    each with its request digest.

    Used for the rare keyed `POST /jobs/cleanup`, whose one call appends one audit event per job
    (a scan of the stream's events that carry an id: no index serves a prefix on every collation).
    """
    rows = await conn.execute(
        select(events)
        .where(
            and_(
                events.c.stream_id == stream_id,
                events.c.command_id.is_not(None),
                func.substr(events.c.command_id, 1, len(prefix)) == prefix,
            )
        )
        .order_by(events.c.sequence)
    )
    return [(row_to_event(r._mapping), r.request_sha256) for r in rows]

