"""Admission and claims follow submission order exactly (SPEC §3.2): the position of each job's
`job_submitted`, not its millisecond timestamp, which a thousand submits can share."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from sqlalchemy import select

from app.domain.canonical import sha256_hex
from app.domain.manifest import normalize_manifest
from app.runtime.node import Node
from app.service import Service
from app.store.database import Database
from app.store.tables import events, jobs
from tests.runtime.conftest import node_settings

T0 = 1_796_000_000_000  # every submit and admission of this test happens in this millisecond
JOBS = 1000


def _manifest() -> dict[str, Any]:
    return normalize_manifest({
        "manifest_version": "1.0",
        "graph_id": "fifo_v1",
        "nodes": [{"node_id": "root", "agent_type": "router", "role": "root"}],
    })


async def _positions(db: Database, event_type: str) -> dict[str, int]:
    async with db.read() as conn:
        rows = await conn.execute(select(events.c.job_id, events.c.position).where(events.c.type == event_type))
        return {r.job_id: r.position for r in rows}


async def test_fifo_among_a_thousand_equal_jobs_submitted_in_one_millisecond(
    db: Database, database_url: str, tmp_path: Path
) -> None:
    frozen = Service(db, clock=lambda: T0)
    manifest = _manifest()
    digest = sha256_hex("fifo")
    # Submitted concurrently (the group commit takes them in this order) and one after another.
    first = await asyncio.gather(*(
        frozen.submit(manifest=manifest, bundle=None, idempotency_key=None, request_sha256=digest)
        for _ in range(JOBS // 2)
    ))
    rest = [
        await frozen.submit(manifest=manifest, bundle=None, idempotency_key=None, request_sha256=digest)
        for _ in range(JOBS - JOBS // 2)
    ]
    order = [s.job_id for s in [*first, *rest]]
    submitted = await _positions(db, "job_submitted")
    assert sorted(order, key=submitted.__getitem__) == order  # the log's order is the submit order
    async with db.read() as conn:
        stamps = {r.submitted_at for r in await conn.execute(select(jobs.c.submitted_at))}
    assert len(stamps) == 1  # one millisecond: a timestamp cannot order them
    assert sorted(order) != order  # nor can the job ids (random after the millisecond)

    settings = node_settings(database_url, tmp_path, max_active_jobs=10, node_name="fifo-node")
    node = Node(settings, db, frozen)
    await node.scheduler.admit()  # two pages of 500
    await node.scheduler.admit()
    queued = await _positions(db, "job_queued")
    assert sorted(queued, key=queued.__getitem__) == order

    claimed: list[str] = []

    async def record(job_id: str, fence: Any, stream: Any) -> None:
        claimed.append(job_id)

    node.starter.bootstrap = record  # type: ignore[method-assign]
    await node.scheduler.claim()
    assert claimed == order[:10]  # the first ten submitted, in order
