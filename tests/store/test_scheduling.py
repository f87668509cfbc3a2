"""store/scheduling.py and the executor-lease mirror of store/leases.py, on both backends."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update

from app.domain.canonical import sha256_hex
from app.domain.job import AdmitJob
from app.domain.manifest import normalize_manifest
from app.runtime.pools import LeaseRow
from app.service import Service
from app.store import leases, scheduling
from app.store.database import Database
from app.store.tables import executor_leases, jobs

NOW = 1_796_000_000_000
TTL = 4_000


def _manifest() -> dict[str, Any]:
    return normalize_manifest({
        "manifest_version": "1.0",
        "graph_id": "scheduling_v1",
        "nodes": [{"node_id": "root", "agent_type": "router", "role": "root"}],
    })


async def _submit(service: Service, count: int) -> list[str]:
    manifest = _manifest()
    return [
        (await service.submit(manifest=manifest, bundle=None, idempotency_key=None, request_sha256=sha256_hex("s"))).job_id
        for _ in range(count)
    ]


async def test_pending_and_queued_jobs_come_in_submission_order(db: Database, service: Service) -> None:
    submitted = await _submit(service, 3)
    async with db.read() as conn:
        assert await scheduling.pending_jobs(conn) == submitted
        assert not await scheduling.any_queued(conn)
    for job_id in reversed(submitted):  # admitted in the reverse order: claims still follow submission
        await service.execute(job_id, AdmitJob("node-a"))
    async with db.read() as conn:
        assert await scheduling.pending_jobs(conn) == []
        assert await scheduling.any_queued(conn)
    async with db.write() as conn:
        assert await scheduling.lock_queued(conn, 2) == submitted[:2]


async def test_a_claim_takes_leases_of_queued_jobs_and_returns_their_events(db: Database, service: Service) -> None:
    first, leased, third, _ = await _submit(service, 4)
    for job_id in (first, leased, third):
        await service.execute(job_id, AdmitJob("node-a"))
    async with db.write() as conn:  # a claimer that died before starting `leased`
        await leases.claim_many(conn, [leased], node="gone-node", incarnation="i0", now_ms=NOW, ttl_ms=TTL)
    async with db.statement() as conn:
        claim = await scheduling.claim_queued(conn, 2, node="node-a", incarnation="i1", now_ms=NOW, ttl_ms=TTL)
    assert claim.picked == [first, leased]
    assert claim.fences == {first: leases.Fence("i1", 1)}
    assert [(e.sequence, e.type) for e in claim.streams[first]] == [(1, "job_submitted"), (2, "job_queued")]
    assert set(claim.streams) == {first}
    async with db.statement() as conn:
        claim = await scheduling.claim_queued(conn, 5, node="node-a", incarnation="i1", now_ms=NOW, ttl_ms=TTL)
    # Still queued (nothing started them): picked again, but their leases are held.
    assert claim.picked == [first, leased, third]
    assert claim.fences == {third: leases.Fence("i1", 1)}
    async with db.read() as conn:
        rows = await leases.lease_rows(conn, [first, leased, third])
    assert {job_id: (r["node"], r["expires_at_ms"]) for job_id, r in rows.items()} == {
        first: ("node-a", NOW + TTL), leased: ("gone-node", NOW + TTL), third: ("node-a", NOW + TTL)
    }


async def test_stream_heads_name_only_jobs_that_exist(db: Database, service: Service) -> None:
    submitted = await _submit(service, 2)
    await service.execute(submitted[1], AdmitJob("node-a"))
    async with db.read() as conn:
        heads = await scheduling.stream_heads(conn, [*submitted, "no-such-job"])
    assert heads == {submitted[0]: 1, submitted[1]: 2}


async def _run(db: Database, job_id: str) -> None:
    async with db.write() as conn:
        await conn.execute(update(jobs).where(jobs.c.job_id == job_id).values(status="running", node="gone-node"))


async def test_recoverable_jobs_are_running_jobs_without_a_live_lease(db: Database, service: Service) -> None:
    no_lease, live, expired, released, queued = await _submit(service, 5)
    for job_id in (no_lease, live, expired, released):
        await _run(db, job_id)
    async with db.write() as conn:
        fences = await leases.claim_many(
            conn, [live, expired, released, queued], node="gone-node", incarnation="i1", now_ms=NOW, ttl_ms=TTL
        )
        await leases.expire(conn, expired, fences[expired], NOW)
        await leases.release(conn, released, fences[released], now_ms=NOW, graceful=True)
    async with db.read() as conn:
        found = await scheduling.recoverable_jobs(conn, now_ms=NOW + 1, limit=10)
        assert {r.job_id: (r.leased, r.last_node) for r in found} == {
            no_lease: (False, "gone-node"),
            expired: (True, "gone-node"),
            released: (True, "gone-node"),
        }
        assert len(await scheduling.recoverable_jobs(conn, now_ms=NOW + 1, limit=2)) == 2
        # Once the live lease has expired too, its job is recoverable.
        later = await scheduling.recoverable_jobs(conn, now_ms=NOW + TTL, limit=10)
        assert live in {r.job_id for r in later}


def _row(lease_id: str, state: str) -> LeaseRow:
    metadata = {"job_id": "job-1", "agent_id": "work"}
    return LeaseRow(lease_id, "default", 1, state, NOW, None, metadata)  # type: ignore[arg-type]


async def _mirrored(db: Database) -> dict[str, tuple[str, str, str]]:
    async with db.read() as conn:
        rows = await conn.execute(select(executor_leases))
        return {r.lease_id: (r.state, r.node, r.job_id) for r in rows}


async def test_the_executor_lease_mirror_inserts_updates_and_deletes(db: Database) -> None:
    async with db.write() as conn:
        await leases.mirror_executor_leases(conn, [_row("a", "queued"), _row("b", "held")], node="n", incarnation="i")
    assert await _mirrored(db) == {"a": ("queued", "n", "job-1"), "b": ("held", "n", "job-1")}
    async with db.write() as conn:
        await leases.mirror_executor_leases(conn, [_row("a", "held"), _row("b", "removed")], node="n", incarnation="i")
    assert await _mirrored(db) == {"a": ("held", "n", "job-1")}
