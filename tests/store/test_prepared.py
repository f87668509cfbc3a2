"""`Prepared` statements: straight to asyncpg where they may, through SQLAlchemy elsewhere (both backends)."""

from __future__ import annotations

import asyncio

import asyncpg  # type: ignore[import-untyped]
import pytest
from sqlalchemy import bindparam, insert, select, text
from sqlalchemy.exc import IntegrityError

from app.domain.events import NewEvent
from app.store import database, event_store
from app.store.database import Database, Prepared, is_unavailable
from app.store.event_store import ConcurrencyConflict, StreamHead
from app.store.tables import event_positions, events

_LAST_POSITION = Prepared(select(event_positions.c.last_position).where(event_positions.c.id == 1))
_BY_STREAM = Prepared(
    select(events.c.stream_id, events.c.sequence, events.c.payload)
    .where(events.c.stream_id == bindparam("b_stream"))
    .order_by(events.c.sequence)
)
_RAW_INSERT = Prepared(insert(events))


def _seal(stream: str, n: int) -> list:
    return event_store.seal(stream, None, StreamHead(), [NewEvent("custom", {"i": i}) for i in range(n)], 1)


async def test_the_driver_is_used_only_inside_a_begun_transaction_or_in_autocommit(db: Database) -> None:
    postgres = db.is_postgres
    async with db.write() as conn:
        # On Postgres the driver began the transaction: its first statement may go straight to it.
        assert (Prepared._driver(conn) is not None) is postgres
        assert (await _LAST_POSITION.first(conn))["last_position"] == 0
    async with db.reader.connect() as conn:
        # A connection SQLAlchemy has not begun: the statement must go through SQLAlchemy, or it
        # would run outside the transaction SQLAlchemy is about to begin.
        assert Prepared._driver(conn) is None
    async with db.read() as conn:  # autocommit reads on Postgres
        assert (Prepared._driver(conn) is not None) is postgres


async def test_rows_answer_by_column_name_and_literals_are_bound(db: Database) -> None:
    async with db.write() as conn:
        await event_store.insert_sealed(conn, _seal("p1", 3))
    async with db.read() as conn:
        rows = await _BY_STREAM.rows(conn, {"b_stream": "p1"})
        assert [(r["stream_id"], r["sequence"]) for r in rows] == [("p1", 1), ("p1", 2), ("p1", 3)]
        assert [r["payload"] for r in rows] == ['{"i":0}', '{"i":1}', '{"i":2}']
        # `id == 1` is a parameter the statement carries itself.
        assert (await _LAST_POSITION.first(conn))["last_position"] == 3
        assert await _BY_STREAM.first(conn, {"b_stream": "nowhere"}) is None


async def test_a_work_of_the_driver_commits_and_rolls_back_with_the_transaction(db: Database) -> None:
    with pytest.raises(RuntimeError):
        async with db.write() as conn:
            await event_store.insert_sealed(conn, _seal("p2", 2))  # positions and rows through the driver
            raise RuntimeError("abort")
    async with db.read() as conn:
        assert await _BY_STREAM.rows(conn, {"b_stream": "p2"}) == []
        assert (await _LAST_POSITION.first(conn))["last_position"] == 0
    async with db.write() as conn:
        await event_store.insert_sealed(conn, _seal("p2", 2))
    async with db.read() as conn:
        assert len(await _BY_STREAM.rows(conn, {"b_stream": "p2"})) == 2


async def test_a_constraint_violation_is_sqlalchemys_integrity_error(db: Database) -> None:
    async with db.write() as conn:
        await event_store.insert_sealed(conn, _seal("p3", 1))
    sealed = _seal("p3", 1)  # sequence 1 again
    with pytest.raises(ConcurrencyConflict):
        async with db.write() as conn:
            await event_store.insert_sealed(conn, sealed)
    row = {
        "position": 99, "stream_id": "p3", "sequence": 1, "event_id": "x", "type": "custom",
        "timestamp": sealed[0].timestamp, "job_id": None, "agent_id": None, "payload": "{}", "hash": "h",
        "hash_alg": "jcs-sha256", "schema_version": 1, "command_id": None, "request_sha256": None,
    }
    with pytest.raises(IntegrityError):
        async with db.write() as conn:
            await conn.execute(text("SELECT 1"))  # begin, so that the driver path is taken on Postgres
            await _RAW_INSERT.execute_many(conn, [row])
    async with db.read() as conn:
        assert len(await _BY_STREAM.rows(conn, {"b_stream": "p3"})) == 1


async def test_statements_of_sqlalchemy_and_the_driver_share_one_write_transaction(db: Database) -> None:
    with pytest.raises(RuntimeError):
        async with db.write() as conn:
            await event_store.insert_sealed(conn, _seal("p4", 1))  # the driver (Postgres)
            await conn.execute(event_positions.update().values(last_position=50))  # SQLAlchemy
            raise RuntimeError("abort")
    async with db.read() as conn:
        assert await _BY_STREAM.rows(conn, {"b_stream": "p4"}) == []
        assert (await _LAST_POSITION.first(conn))["last_position"] == 0
    async with db.write() as conn:
        await conn.execute(event_positions.update().values(last_position=50))
        await event_store.insert_sealed(conn, _seal("p4", 1))
    async with db.read() as conn:
        assert [r["sequence"] for r in await _BY_STREAM.rows(conn, {"b_stream": "p4"})] == [1]
        assert (await _LAST_POSITION.first(conn))["last_position"] == 51


async def test_a_connection_lost_in_a_write_is_unavailable_and_not_reused(db: Database) -> None:
    if not db.is_postgres:
        pytest.skip("a server-side session kill exists on Postgres only; SQLite has no server")
    async with db.write() as conn:
        pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
    with pytest.raises(Exception) as raised:
        async with db.write() as conn:
            assert (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one() == pid  # pool reuse
            async with db.read() as other:
                await other.execute(text(f"SELECT pg_terminate_backend({pid})"))
            await event_store.insert_sealed(conn, _seal("p5", 1))
    assert is_unavailable(raised.value), repr(raised.value)
    async with db.write() as conn:  # the dead connection was dropped, not handed out again
        assert (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one() != pid
        await event_store.insert_sealed(conn, _seal("p5", 1))
    async with db.read() as conn:
        assert len(await _BY_STREAM.rows(conn, {"b_stream": "p5"})) == 1


async def test_a_connection_that_died_in_the_pool_fails_its_write_as_unavailable(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not db.is_postgres:
        pytest.skip("a server-side session kill exists on Postgres only; SQLite has no server")
    monkeypatch.setattr(database, "PING_AFTER_IDLE_SECONDS", 3600.0)  # however slow the machine: no ping
    async with db.write() as conn:
        pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
    killer = await asyncpg.connect(db.url.replace("postgresql+asyncpg://", "postgresql://", 1))  # outside the pool
    try:
        await killer.execute(f"SELECT pg_terminate_backend({pid})")
    finally:
        await killer.close()
    await asyncio.sleep(0.2)  # the driver sees the session end
    with pytest.raises(Exception) as raised:
        async with db.write() as conn:
            await event_store.insert_sealed(conn, _seal("p6", 1))
    assert is_unavailable(raised.value), repr(raised.value)
    async with db.write() as conn:
        await event_store.insert_sealed(conn, _seal("p6", 1))
    async with db.read() as conn:
        assert len(await _BY_STREAM.rows(conn, {"b_stream": "p6"})) == 1
