"""The fault proxy (tests/faultproxy.py) does what the network fault tests rely on, against real PostgreSQL.

Postgres only: SQLite has no network between a node and its database.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg
import pytest

from tests.conftest import PG_ADMIN_DSN
from tests.faultproxy import FaultProxy


def _proxied(proxy: FaultProxy) -> str:
    host_part = PG_ADMIN_DSN.split("@", 1)
    user = host_part[0] if len(host_part) == 2 else "postgresql://postgres"
    return f"{user}@127.0.0.1:{proxy.port}/postgres"


@pytest.fixture
def proxy() -> FaultProxy:
    host, port = "127.0.0.1", int(PG_ADMIN_DSN.rsplit(":", 1)[1].split("/", 1)[0])
    started = FaultProxy(host, port, seed=1).start()
    yield started
    started.stop()


async def test_a_lost_commit_acknowledgement_drops_the_connection_after_the_commit(proxy: FaultProxy) -> None:
    table = f"fp_{uuid.uuid4().hex[:8]}"
    direct = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await direct.execute(f"CREATE TABLE {table} (v int)")
        conn = await asyncpg.connect(_proxied(proxy))
        proxy.lose_commit_acks(1.0)
        tx = conn.transaction()
        await tx.start()
        await conn.execute(f"INSERT INTO {table} VALUES (1)")
        with pytest.raises((asyncpg.ConnectionDoesNotExistError, asyncpg.InterfaceError, ConnectionError, OSError)):
            await tx.commit()
        assert proxy.counters.acks_lost == 1
        assert await direct.fetchval(f"SELECT count(*) FROM {table}") == 1  # committed all the same
        proxy.lose_commit_acks(0)
        again = await asyncpg.connect(_proxied(proxy))
        async with again.transaction():
            await again.execute(f"INSERT INTO {table} VALUES (2)")
        assert await direct.fetchval(f"SELECT count(*) FROM {table}") == 2
        await again.close()
    finally:
        await direct.execute(f"DROP TABLE IF EXISTS {table}")
        await direct.close()


async def test_a_black_hole_holds_statements_until_it_heals_and_a_cut_closes_connections(proxy: FaultProxy) -> None:
    conn = await asyncpg.connect(_proxied(proxy))
    assert await conn.fetchval("SELECT 1") == 1
    proxy.partition()
    held = asyncio.ensure_future(conn.fetchval("SELECT 2"))
    done, _ = await asyncio.wait([held], timeout=1.0)
    assert not done  # black-holed
    proxy.heal()
    assert await asyncio.wait_for(held, 10) == 2
    proxy.cut()
    with pytest.raises((asyncpg.ConnectionDoesNotExistError, asyncpg.InterfaceError, ConnectionError, OSError)):
        await conn.fetchval("SELECT 3")
    proxy.delay(0.2)
    fresh = await asyncpg.connect(_proxied(proxy))
    started = time.monotonic()
    assert await fresh.fetchval("SELECT 4") == 4
    assert time.monotonic() - started >= 0.2  # both ways held: the query and its answer
    await fresh.close()
