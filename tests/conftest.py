"""Fixtures shared by every suite: one parametrised database fixture over SQLite and Postgres.

Every store, API and runtime test that takes `db` (or anything built on it) runs twice: once
on a SQLite file and once on a real PostgreSQL database that the session creates and drops.
Postgres is required: if it cannot be reached the tests fail, they never skip.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import create_async_engine

from app.service import Service
from app.store.database import Database
from app.store.migrate import upgrade_to_head
from app.store.tables import event_positions, metadata

PG_ADMIN_DSN = os.environ.get("MIRROR_NEURON_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
BACKENDS = ("sqlite", "postgres")
_REAL_HOME = pytest.StashKey[tuple[str | None, str]]()  # (the real HOME, the session's empty one)


def pytest_configure(config: pytest.Config) -> None:
    """Give the whole session, and every node and executor it starts, an empty home directory.

    String commands run as `bash -lc` (SPEC §7.5.3), so bash sources the login profile of $HOME.
    The machine's own profile must not change what the tests observe: on the CI machine it runs
    `pyenv init`, whose `pyenv rehash` writes to stderr and waits up to 60 s on a lock file that a
    process group killed mid-rehash (the timeout and cancel tests do that) leaves behind.
    """
    home = tempfile.mkdtemp(prefix="mn-test-home-")
    config.stash[_REAL_HOME] = (os.environ.get("HOME"), home)
    os.environ["HOME"] = home


def pytest_unconfigure(config: pytest.Config) -> None:
    """Restore HOME and remove the session's empty home directory."""
    real, home = config.stash.get(_REAL_HOME, (None, None))
    if home is None:
        return
    if real is None:
        os.environ.pop("HOME", None)
    else:
        os.environ["HOME"] = real
    shutil.rmtree(home, ignore_errors=True)


def _pg_url(dsn: str, name: str) -> str:
    base = dsn.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    return f"{base}/{name}"


async def create_pg_database(prefix: str = "mn_test") -> tuple[str, str]:
    """Create a fresh Postgres database; return (name, SQLAlchemy URL)."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return name, _pg_url(PG_ADMIN_DSN, name)


async def drop_pg_database(name: str) -> None:
    """Drop a database created by create_pg_database, disconnecting stragglers."""
    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def migrate(url: str) -> None:
    """Bring a database to the head revision."""
    engine = create_async_engine(url)
    try:
        await upgrade_to_head(engine)
    finally:
        await engine.dispose()


@pytest.fixture(scope="session", params=BACKENDS)
async def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    """A migrated database URL per backend, for the whole session."""
    if request.param == "sqlite":
        path: Path = tmp_path_factory.mktemp("sqlite") / "mirror_neuron.db"
        url = f"sqlite+aiosqlite:///{path}"
        await migrate(url)
        yield url
        return
    name, url = await create_pg_database()
    try:
        await migrate(url)
        yield url
    finally:
        await drop_pg_database(name)


async def reset(db: Database) -> None:
    """Empty every table and restart positions."""
    async with db.write() as conn:
        for table in reversed(metadata.sorted_tables):
            if table is not event_positions:
                await conn.execute(delete(table))
        await conn.execute(update(event_positions).values(last_position=0))


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    """An empty database on the current backend."""
    database = Database(database_url)
    await reset(database)
    try:
        yield database
    finally:
        await database.dispose()


@pytest.fixture
def backend(database_url: str) -> str:
    """'sqlite' or 'postgres'."""
    return "sqlite" if database_url.startswith("sqlite") else "postgres"


@pytest.fixture
async def service(db: Database) -> Service:
    """The write path over the test database."""
    return Service(db)
