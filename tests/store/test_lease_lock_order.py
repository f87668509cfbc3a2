"""The heartbeat's lease renewal and a batch of steps lock lease rows in the same order.

A batch of steps reads its jobs' lease rows FOR SHARE in job_id order; the heartbeat renews
every lease of its incarnation. When the renewal's UPDATE locked rows in the order its scan met
them, the two deadlocked under load (seen in a 150-job cancel run on Postgres: "deadlock
detected" in the heartbeat). Row locks exist only on Postgres; on SQLite one writer at a time
holds the whole database, so there is no order to get wrong.
"""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import insert, select

from app.store import leases
from app.store.database import Database
from app.store.tables import job_leases

NOW = 1_711_623_600_000
TTL = 10_000


async def test_renewal_locks_leases_in_job_id_order(db: Database, backend: str) -> None:
    if backend != "postgres":
        pytest.skip("row locks exist only on Postgres; SQLite serialises whole transactions")
    async with db.write() as conn:  # "b" first: a scan in insertion order meets it first
        for job_id in ("job-b", "job-a"):
            await conn.execute(
                insert(job_leases).values(
                    job_id=job_id, node="n", incarnation="inc", token=1, expires_at_ms=NOW + TTL, released=False
                )
            )

    step_holds_a = asyncio.Event()
    finish_step = asyncio.Event()

    async def step() -> None:  # a batch of steps: FOR SHARE on a, then on b
        async with db.write() as conn:
            share = select(job_leases.c.job_id).order_by(job_leases.c.job_id).with_for_update(read=True)
            await conn.execute(share.where(job_leases.c.job_id == "job-a"))
            step_holds_a.set()
            await finish_step.wait()
            await conn.execute(share.where(job_leases.c.job_id == "job-b"))

    async def renewal() -> None:
        async with db.write() as conn:
            await leases.renew_owned(conn, "inc", ["job-a", "job-b"], now_ms=NOW + 1, ttl_ms=TTL)

    stepping = asyncio.create_task(step())
    await step_holds_a.wait()
    renewing = asyncio.create_task(renewal())
    await asyncio.sleep(0.5)  # the renewal is now waiting for a; it must not be holding b
    finish_step.set()
    # Both finish: the step gets b, commits, and the renewal goes on. A renewal that had locked
    # b first would make Postgres abort one of the two with "deadlock detected".
    await asyncio.wait_for(asyncio.gather(stepping, renewing), timeout=10)
    async with db.read() as conn:
        expiries = (await conn.execute(select(job_leases.c.expires_at_ms))).scalars().all()
    assert expiries == [NOW + 1 + TTL] * 2
