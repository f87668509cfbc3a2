"""Engines, transactions, failure classification and dialect setup (pragmas, session settings)."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy import event, text
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import (
    DBAPIError,
    DisconnectionError,
    IntegrityError,
    InterfaceError,
    OperationalError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.util.concurrency import await_

from app.ops import metrics

# A pooled Postgres connection idle for longer than this is pinged before use (one `;` round
# trip). SQLAlchemy's pool_pre_ping costs three round trips (BEGIN, `;`, ROLLBACK) on every
# checkout, which was a third of all round trips of a busy node; a connection returned to the
# pool a moment ago is alive, and one broken since fails its statement and is discarded.
PING_AFTER_IDLE_SECONDS = 1.0


# What `Database.write()` and `read()` yield, for code outside the store that passes it on to
# store functions without importing SQLAlchemy.
Connection = AsyncConnection


class DatabaseUnavailable(Exception):
    """The database cannot be reached or written; the detail never names credentials."""


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Autocommit at the driver level so that our own BEGIN statements are the transactions.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # Appendix B.5: a 2xx means the events are on disk.
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_engine(url: str, *, begin: str, pool_size: int) -> AsyncEngine:
    engine = create_async_engine(url, pool_size=pool_size, max_overflow=0, pool_timeout=120)
    event.listen(engine.sync_engine, "connect", _sqlite_pragmas)

    def _begin(conn: Any) -> None:
        conn.exec_driver_sql(begin)

    event.listen(engine.sync_engine, "begin", _begin)
    return engine


# PostgreSQL SQLSTATEs (by prefix) that mean "unreachable or not writable": connection exceptions,
# insufficient resources (disk full, out of memory, too many connections), operator intervention
# (shutdown, restart, database dropped; not 57014, a cancelled statement), a read-only
# transaction (a standby) and system errors (I/O).
UNAVAILABLE_SQLSTATES = ("08", "53", "57P", "25006", "58")
_UNAVAILABLE_DRIVER_ERRORS = {
    "CannotConnectNowError",
    "ConnectionDoesNotExistError",
    "TooManyConnectionsError",
}


def _driver_errors(exc: BaseException) -> list[BaseException]:
    """The exception, the driver error it wraps (`orig`) and their explicit causes."""
    found: list[BaseException] = []
    pending: list[BaseException | None] = [exc]
    while pending:
        item = pending.pop()
        if item is None or any(item is seen for seen in found):
            continue
        found.append(item)
        pending += [getattr(item, "orig", None), item.__cause__]
    return found


def _means_unavailable(exc: BaseException) -> bool:
    if isinstance(exc, DatabaseUnavailable | OperationalError | InterfaceError | ConnectionError | OSError):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if type(exc).__name__ in _UNAVAILABLE_DRIVER_ERRORS:  # asyncpg errors raised outside SQLAlchemy
        return True
    sqlstate = getattr(exc, "sqlstate", None)
    return isinstance(sqlstate, str) and sqlstate.startswith(UNAVAILABLE_SQLSTATES)


def is_unavailable(exc: BaseException) -> bool:
    """True when an exception means the database is unreachable or not writable."""
    return any(_means_unavailable(item) for item in _driver_errors(exc))


def is_conflict(exc: BaseException) -> bool:
    """True when a write lost a race for a unique key (a job id, an Idempotency-Key) to another writer."""
    return isinstance(exc, IntegrityError)


def is_database_error(exc: BaseException) -> bool:
    """True when the database refused a statement (a deadlock, a serialization failure, a taken key, ...)."""
    return isinstance(exc, DBAPIError)


def is_pool_timeout(exc: BaseException) -> bool:
    """True when no pooled connection came free within the pool's timeout (the database is busy)."""
    return isinstance(exc, PoolTimeout)


def _ping_when_idle(engine: AsyncEngine) -> None:
    pool = engine.sync_engine.pool

    @event.listens_for(pool, "checkin")
    def _checkin(_dbapi_connection: Any, record: Any) -> None:
        if record is not None:
            record.info["idle_since"] = time.monotonic()

    @event.listens_for(pool, "checkout")
    def _checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_SECONDS:
            return
        try:
            await_(dbapi_connection.driver_connection.fetchrow(";"))
        except Exception as exc:  # the pool retries the checkout with a new connection
            raise DisconnectionError(f"pooled connection is dead: {type(exc).__name__}") from exc


async def driver_fetch(conn: AsyncConnection, sql: str, params: Sequence[Any]) -> list[Sequence[Any]]:
    """The rows of a plain SQL query (`?` placeholders) straight from the driver, as tuples.

    For bulk scans only: it skips SQLAlchemy's result layer, which costs several times the fetch
    itself per row. It runs on the connection's current transaction.
    """
    raw = (await conn.get_raw_connection()).driver_connection
    assert raw is not None
    if conn.dialect.name == "postgresql":
        numbered = iter(range(1, len(params) + 1))
        return list(await raw.fetch(re.sub(r"\?", lambda _: f"${next(numbered)}", sql), *params))
    async with raw.execute(sql, tuple(params)) as cursor:
        return list(await cursor.fetchall())


def _count_checkouts(engine: AsyncEngine) -> None:
    """Keep `mirror_neuron_db_pool_in_use` at the number of connections checked out of the pool."""
    pool = engine.sync_engine.pool
    event.listen(pool, "checkout", lambda *_: metrics.connection_checked_out())
    # Called for every connection returned, invalidated ones included (then with None).
    event.listen(pool, "checkin", lambda *_: metrics.connection_checked_in())


class Database:
    """A writer and a reader engine over one database URL."""

    def __init__(self, url: str, *, pool_size: int = 20, stalled_transaction_ms: int = 10_000) -> None:
        self.url = url
        parsed = make_url(url)
        self.dialect = parsed.get_backend_name()
        if self.dialect == "sqlite":
            # One writer connection per process; BEGIN IMMEDIATE takes the file's write lock up
            # front so that concurrent processes queue instead of failing on lock upgrade.
            self.writer = _sqlite_engine(url, begin="BEGIN IMMEDIATE", pool_size=1)
            self.reader = _sqlite_engine(url, begin="BEGIN", pool_size=4)
        elif self.dialect == "postgresql":
            # A node that stalls inside a transaction (a paused VM, SIGSTOP) would hold row locks
            # — the job row, the lease row, the position counter — and stop every other node.
            # Postgres ends such a session after `stalled_transaction_ms`; its owner's lease has
            # expired by then anyway, so it may not write (DESIGN §2 invariant 8).
            settings = {"idle_in_transaction_session_timeout": str(stalled_transaction_ms)}
            # The pool keeps `pool_size` connections open and opens up to half as many again
            # for bursts. A connection above `pool_size` is closed as soon as it is returned, so
            # a steady load that needs more than the kept ones opens and closes connections per
            # request (TLS attempt and start-up each time: 13 % of the job list's CPU at 32
            # clients with 10 kept): keep enough for the API's usual concurrency.
            self.writer = create_async_engine(
                url,
                pool_size=pool_size,
                max_overflow=pool_size // 2,
                pool_timeout=30,
                connect_args={"server_settings": settings},
            )
            _ping_when_idle(self.writer)
            self.reader = self.writer
        else:
            raise ValueError(f"unsupported database URL scheme {parsed.drivername!r}")
        for engine in {id(e): e for e in (self.writer, self.reader)}.values():
            _count_checkouts(engine)

    @property
    def is_postgres(self) -> bool:
        """True on Postgres."""
        return self.dialect == "postgresql"

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction: committed when the block exits normally, rolled back otherwise.

        On Postgres the driver holds the transaction: the connection is in autocommit for
        SQLAlchemy and asyncpg's BEGIN comes first, so every statement of the block, through
        SQLAlchemy or `Prepared`, runs inside it and `Prepared` may use the driver from the first
        statement on. (SQLAlchemy begins lazily at its first statement, which left every write
        transaction's first statement on SQLAlchemy's slower path.)
        """
        if not self.is_postgres:
            async with self.writer.begin() as conn:
                started = time.perf_counter()
                yield conn
            metrics.transaction_committed(time.perf_counter() - started)
            return
        async with self.writer.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            raw = _asyncpg_of(conn)
            started = time.perf_counter()
            transaction = await _begin(conn, raw)
            try:
                yield conn
            except BaseException:
                await _rollback(conn, raw, transaction)
                raise
            await _driver_call(conn, raw, transaction.commit(), "COMMIT")
            metrics.transaction_committed(time.perf_counter() - started)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A read-only connection: a consistent snapshot on SQLite, one snapshot per statement on Postgres.

        Postgres runs READ COMMITTED, where every statement of a transaction takes its own
        snapshot anyway: reads run in autocommit there, saving BEGIN and COMMIT round trips.
        """
        if self.is_postgres:
            async with self.reader.connect() as conn:
                await conn.execution_options(isolation_level="AUTOCOMMIT")
                yield conn
            return
        async with self.reader.connect() as conn, conn.begin():
            yield conn

    @asynccontextmanager
    async def statement(self) -> AsyncIterator[AsyncConnection]:
        """A connection for one self-contained write statement: autocommit on Postgres (no BEGIN
        and COMMIT round trips; the statement is its own transaction), a write transaction on SQLite."""
        if not self.is_postgres:
            async with self.write() as conn:
                yield conn
            return
        async with self.writer.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            yield conn

    async def ping(self) -> None:
        """One `SELECT 1` on a read connection: raises when the database does not answer."""
        async with self.read() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        """Close every pooled connection."""
        await self.writer.dispose()
        if self.reader is not self.writer:
            await self.reader.dispose()


def _asyncpg_of(conn: AsyncConnection) -> Any:
    sync = conn.sync_connection
    assert sync is not None
    raw = sync.connection.driver_connection
    assert raw is not None
    return raw


# What the driver raises: server errors, client-side errors, and the protocol's own complaints
# when the server dropped the session under it (InternalClientError).
_DRIVER_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError, OSError)


def _wrap_driver_error(exc: Exception, sql: str, params: Any, raw: Any) -> Exception:
    """A driver error as SQLAlchemy's, the driver error as `orig` (as SQLAlchemy itself raises them).

    Any error on a connection that is closed by then is an InterfaceError: the database went away.
    """
    if isinstance(exc, asyncpg.IntegrityConstraintViolationError):
        return IntegrityError(sql, params, exc)
    if isinstance(exc, asyncpg.InterfaceError | OSError) or raw.is_closed():
        return InterfaceError(sql, params, exc)
    return DBAPIError(sql, params, exc)


async def _discard(conn: AsyncConnection) -> None:
    """Drop a connection whose transaction state is unknown: the pool must not hand it out again."""
    with contextlib.suppress(Exception):
        await conn.invalidate()


async def _begin(conn: AsyncConnection, raw: Any) -> Any:
    try:
        transaction = raw.transaction()  # raises at once on a connection closed while pooled
    except _DRIVER_ERRORS as exc:
        await _discard(conn)
        raise _wrap_driver_error(exc, "BEGIN", (), raw) from exc
    await _driver_call(conn, raw, transaction.start(), "BEGIN")
    return transaction


async def _driver_call(conn: AsyncConnection, raw: Any, call: Awaitable[Any], sql: str) -> None:
    try:
        await call
    except _DRIVER_ERRORS as exc:
        await _discard(conn)
        raise _wrap_driver_error(exc, sql, (), raw) from exc
    except BaseException:  # cancelled half-way: the server may or may not have seen it
        await _discard(conn)
        raise


async def _rollback(conn: AsyncConnection, raw: Any, transaction: Any) -> None:
    if conn.invalidated:
        return
    if raw.is_closed():
        await _discard(conn)
        return
    try:
        await transaction.rollback()
    except BaseException:
        await _discard(conn)


_ASYNCPG = asyncpg_dialect()  # type: ignore[no-untyped-call]


class Prepared:
    """A statement built once and run without SQLAlchemy's per-execution work where it can be.

    On Postgres, on a connection whose driver is inside a transaction (every `Database.write`
    block; a transaction SQLAlchemy began elsewhere) or in autocommit (`Database.read`), the SQL
    compiled once here goes straight to the asyncpg connection with positional arguments;
    anywhere else (SQLite, or a connection SQLAlchemy has not begun yet) the statement runs
    through SQLAlchemy as usual. Profiles of a busy node showed
    SQLAlchemy's execution layer at a third of its CPU: 220-340 µs per statement against ~100 µs
    for the driver alone. Rows support `row["column"]` either way. Driver errors come out as
    SQLAlchemy's (IntegrityError, DBAPIError, InterfaceError) with the driver error as `orig`.
    """

    def __init__(self, statement: Any, *, sqlite: Any = None) -> None:
        self.statement = statement
        self.sqlite = statement if sqlite is None else sqlite
        compiled = statement.compile(dialect=_ASYNCPG)
        self.sql = str(compiled)
        self.names: tuple[str, ...] = tuple(compiled.positiontup or ())
        # Values the statement carries itself (a literal such as `id == 1` becomes a parameter).
        self.fixed = {name: bind.value for name, bind in compiled.binds.items() if not bind.required}

    @staticmethod
    def _driver(conn: AsyncConnection) -> Any:
        if conn.dialect.name != "postgresql":
            return None
        sync = conn.sync_connection
        if sync is None:
            return None
        raw = sync.connection.driver_connection
        if raw is None:
            return None
        if raw.is_in_transaction() or sync.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
            return raw
        return None

    def _args(self, values: Mapping[str, Any]) -> list[Any]:
        return [values[name] if name in values else self.fixed[name] for name in self.names]

    async def rows(self, conn: AsyncConnection, values: Mapping[str, Any] | None = None) -> list[Any]:
        """Every row of a query, each indexable by column name."""
        raw = self._driver(conn)
        if raw is None:
            return [r._mapping for r in await conn.execute(self._for(conn), dict(values or {}))]
        args = self._args(values or {})
        try:
            return list(await raw.fetch(self.sql, *args))
        except _DRIVER_ERRORS as exc:
            raise _wrap_driver_error(exc, self.sql, args, raw) from exc

    async def first(self, conn: AsyncConnection, values: Mapping[str, Any] | None = None) -> Any:
        """The first row of a query, or None."""
        rows = await self.rows(conn, values)
        return rows[0] if rows else None

    async def execute_many(self, conn: AsyncConnection, values: Sequence[Mapping[str, Any]]) -> None:
        """Run a write once per parameter set (one executemany)."""
        if not values:
            return
        raw = self._driver(conn)
        if raw is None:
            await conn.execute(self._for(conn), [dict(v) for v in values])
            return
        args = [self._args(v) for v in values]
        try:
            await raw.executemany(self.sql, args)
        except _DRIVER_ERRORS as exc:
            raise _wrap_driver_error(exc, self.sql, args, raw) from exc

    def _for(self, conn: AsyncConnection) -> Any:
        return self.sqlite if conn.dialect.name == "sqlite" else self.statement
