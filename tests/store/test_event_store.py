"""Store contract suite: runs on SQLite and Postgres."""

from __future__ import annotations

import json

import msgspec
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from app.domain.canonical import event_hash
from app.domain.events import NewEvent
from app.service import Service
from app.store import event_store
from app.store.database import Database
from app.store.event_store import ConcurrencyConflict, StreamHead


async def _append(db: Database, stream: str, head: StreamHead, n: int, now: int = 1_700_000_000_000) -> list:
    async with db.write() as conn:
        sealed = event_store.seal(stream, None, head, [NewEvent("custom", {"i": i, "ü": "ä"}) for i in range(n)], now)
        return await event_store.insert_sealed(conn, sealed)


async def test_sequences_positions_and_hash_chain(db: Database) -> None:
    first = await _append(db, "s1", StreamHead(), 2)
    second = await _append(db, "s1", StreamHead(2, first[-1].hash, first[-1].timestamp), 1)
    recorded = first + second
    assert [e.sequence for e in recorded] == [1, 2, 3]
    assert [e.position for e in recorded] == [1, 2, 3]
    prev = ""
    for e in recorded:
        expected = event_hash(
            prev_hash=prev, stream_id="s1", sequence=e.sequence, event_id=e.event_id, type_=e.type,
            timestamp=e.timestamp, agent_id=None, payload=e.payload,
        )
        assert e.hash == expected
        prev = e.hash
    async with db.read() as conn:
        stored = await event_store.read_stream(conn, "s1")
    assert stored == recorded


async def test_api_records_of_rows_equal_the_decoded_events(db: Database) -> None:
    """The event pages send payloads as stored (msgspec.Raw): same record, same key order as Event.to_api."""
    async with db.write() as conn:
        payloads = [{"z": [1, 2.5, None], "a": {"ü": "ä\u2028"}, "n": -3}, {}]
        sealed = event_store.seal("s1", "s1", StreamHead(), [NewEvent("custom", p, "agent") for p in payloads], 1)
        recorded = await event_store.insert_sealed(conn, sealed)
    async with db.read() as conn:
        rows = await event_store.read_stream_rows(conn, "s1")
        feed = await event_store.read_job_event_rows(conn)
    for source in (rows, feed):
        records = [json.loads(msgspec.json.encode(event_store.api_record(r))) for r in source]
        assert records == [e.to_api() for e in recorded]
        assert [list(r) for r in records] == [list(e.to_api()) for e in recorded]


async def test_conflicting_sequence_is_refused(db: Database) -> None:
    await _append(db, "s1", StreamHead(), 1)
    with pytest.raises(ConcurrencyConflict):
        await _append(db, "s1", StreamHead(), 1)
    async with db.read() as conn:
        assert len(await event_store.read_stream(conn, "s1")) == 1


async def test_timestamps_never_decrease(db: Database) -> None:
    first = await _append(db, "s1", StreamHead(), 1, now=2_000_000_000_000)
    second = await _append(db, "s1", StreamHead(1, first[0].hash, first[0].timestamp), 1, now=1_000_000_000_000)
    assert second[0].timestamp == first[0].timestamp


async def test_update_of_an_event_is_refused_by_the_database(db: Database) -> None:
    await _append(db, "s1", StreamHead(), 1)
    with pytest.raises(DBAPIError, match="immutable"):
        async with db.write() as conn:
            await conn.execute(text("UPDATE events SET type = 'forged' WHERE stream_id = 's1'"))
    async with db.read() as conn:
        assert (await event_store.read_stream(conn, "s1"))[0].type == "custom"


async def test_system_stream_appends_chain(service: Service) -> None:
    a = await service.append_system([NewEvent("node_registered", {"node": "a"})])
    b = await service.append_system([NewEvent("node_registered", {"node": "b"})])
    assert (a[0].sequence, b[0].sequence) == (1, 2)
    assert b[0].position > a[0].position


async def test_schema_version_column_follows_the_registry(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    from app.domain import upcasting
    from tests.unit.test_upcasting import V2

    monkeypatch.setattr(upcasting, "REGISTRY", upcasting.UpcasterRegistry([V2]))
    async with db.write() as conn:
        sealed = event_store.seal(
            "s1", None, StreamHead(), [NewEvent("job_scheduled", {"owner": {"node": "n"}}), NewEvent("job_queued", {})], 1
        )
        await event_store.insert_sealed(conn, sealed)
    async with db.read() as conn:
        versions = (await conn.execute(text("SELECT type, schema_version FROM events ORDER BY position"))).all()
    assert [tuple(v) for v in versions] == [("job_scheduled", 2), ("job_queued", 1)]
