"""The connection pool under a burst larger than it (both backends)."""

from __future__ import annotations

import asyncio

from sqlalchemy import event, text
from sqlalchemy.exc import TimeoutError as PoolTimeout

from app.store.database import Database, is_pool_timeout


async def test_a_burst_larger_than_the_pool_queues_and_the_kept_connections_are_reused(database_url: str) -> None:
    db = Database(database_url, pool_size=2)
    opened = 0

    def count(*_: object) -> None:
        nonlocal opened
        opened += 1

    event.listen(db.reader.sync_engine.pool, "connect", count)
    inside = peak = 0

    async def hold() -> None:
        nonlocal inside, peak
        async with db.read() as conn:
            inside += 1
            peak = max(peak, inside)
            assert (await conn.execute(text("SELECT 1"))).scalar() == 1
            await asyncio.sleep(0.05)
            inside -= 1

    try:
        await asyncio.wait_for(asyncio.gather(*(hold() for _ in range(9))), timeout=30)
        # Postgres: 2 kept + 1 for bursts; SQLite: its fixed reader pool of 4.
        limit = 3 if db.is_postgres else 4
        assert 1 < peak <= limit
        assert opened <= limit
        before = opened
        for _ in range(3):  # a load the kept connections cover opens none
            await asyncio.gather(*(hold() for _ in range(2)))
        assert opened == before
    finally:
        await db.dispose()


def test_a_pool_timeout_is_named_by_the_store() -> None:
    # The API answers it 503 "database unavailable" without knowing SQLAlchemy's exception.
    assert is_pool_timeout(PoolTimeout("QueuePool limit of size 2 overflow 1 reached"))
    assert not is_pool_timeout(TimeoutError()) and not is_pool_timeout(ValueError())
