"""Seeding a scratch database fast, through the application's own append path.

* `template`: one real trivial job run to completion by a real node; its events are the pattern.
* `seed_jobs`: K copies of that history under new job ids, each re-sealed (new event ids, hash
  chain, timestamps) and folded with the application's functions, written in batches of jobs per
  transaction with `projector.save_many` and `event_store.insert_sealed` — exactly the rows the
  service would have written, so `mirror-neuron verify` agrees and `rebuild` has real work.
* `seed_long_job`: one job with N events, appended through `Service.execute` (submit, admit, a
  lease, start, then `RecordAgentEvents` of 500 custom events at a time), then cancelled.

The domain work (sealing and folding) runs in a process pool so that seeding 10⁶ events takes a
minute or two rather than many.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

from bench.common import Config, Server, log, trivial_manifest

BATCH_JOBS = 500


@dataclass
class Seeded:
    """What a seeded database holds."""

    url: str
    job_ids: list[str]
    long_job: str
    events: int
    target: str = ""  # libpq DSN or SQLite file, for the raw peers


def template(cfg: Config, url: str) -> list[dict[str, Any]]:
    """Run one trivial job on a real node and return its events (API records)."""
    with Server(cfg, url, "seed-template", MIRROR_NEURON_POLL_INTERVAL_MS="20") as server:
        job_id = server.post_json("/api/v1/jobs", trivial_manifest("bench_reads"))["job_id"]
        deadline = time.monotonic() + 60
        while server.get_json(f"/api/v1/jobs/{job_id}")["job"]["status"] != "completed":
            if time.monotonic() > deadline:
                raise RuntimeError(f"template job {job_id} did not complete")
            time.sleep(0.05)
        events = server.get_json(f"/api/v1/jobs/{job_id}/events")["data"]
    return [{"job_id": job_id, **e} for e in events]


def _new_job_id(graph_id: str, epoch_ms: int) -> str:
    return f"{graph_id}-{epoch_ms:013d}-{secrets.token_hex(6)}"


async def _write_copies(url: str, events: list[dict[str, Any]], count: int, base_ms: int) -> list[str]:
    """Seal and fold `count` copies of the template, then write them in one transaction."""
    from app.domain.events import NewEvent
    from app.domain.projection import fold
    from app.store import event_store, projector
    from app.store.database import Database

    old_id = events[0]["job_id"]
    graph_id = events[0]["payload"]["graph_id"]
    texts = [(e["type"], e["agent_id"], json.dumps(e["payload"])) for e in events]
    projections, sealed_all = [], []
    for i in range(count):
        now = base_ms + i
        job_id = _new_job_id(graph_id, now)
        fresh = [NewEvent(t, json.loads(p.replace(old_id, job_id)), a) for t, a, p in texts]
        sealed = event_store.seal(job_id, job_id, event_store.StreamHead(), fresh, now)
        projection = fold(sealed)
        assert projection is not None
        projections.append(projection)
        sealed_all.extend(sealed)
    db = Database(url)
    try:
        async with db.write() as conn:
            await projector.save_many(conn, [(None, p) for p in projections])
            await event_store.insert_sealed(conn, sealed_all)
    finally:
        await db.dispose()
    return [p.job.job_id for p in projections]


def _copies(args: tuple[str, list[dict[str, Any]], int, int]) -> list[str]:
    """Worker process: write one chunk of copies through its own connection."""
    return asyncio.run(_write_copies(*args))


async def seed_jobs(url: str, events: list[dict[str, Any]], count: int) -> list[str]:
    """Write `count` copies of the template job from two processes; returns their ids."""
    loop = asyncio.get_running_loop()
    job_ids: list[str] = []
    started = time.monotonic()
    base = int(time.time() * 1000) - count  # distinct updated_at per job, all in the past
    chunks = [(url, events, min(BATCH_JOBS, count - s), base + s) for s in range(0, count, BATCH_JOBS)]
    with ProcessPoolExecutor(max_workers=2) as pool:
        futures = [loop.run_in_executor(pool, _copies, c) for c in chunks]
        for done, future in enumerate(futures, 1):
            job_ids.extend(await future)
            if done % 20 == 0:
                rate = len(job_ids) / (time.monotonic() - started)
                log(f"  seeded {len(job_ids):,} jobs ({rate:,.0f} jobs/s)")
    return job_ids


async def seed_long_job(url: str, count: int) -> str:
    """One running job with `count` custom events, appended through the service, then cancelled."""
    from app.domain.events import NewEvent
    from app.domain.job import AdmitJob, CancelJob, RecordAgentEvents, StartJob
    from app.domain.manifest import normalize_manifest
    from app.service import Service
    from app.store import leases
    from app.store.database import Database

    db = Database(url)
    service = Service(db)
    try:
        manifest = normalize_manifest(trivial_manifest("bench_long"))
        submitted = await service.submit(manifest=manifest, bundle=None, idempotency_key=None, request_sha256="0" * 64)
        job_id = submitted.job_id
        await service.execute(job_id, AdmitJob("bench-seed"))
        async with db.write() as conn:
            fence = await leases.claim(
                conn, job_id, node="bench-seed", incarnation="bench-seed", now_ms=service.clock(), ttl_ms=10**9
            )
        assert fence is not None
        await service.execute(job_id, StartJob("bench-seed", ()), fence)
        written = 5
        note = "x" * 120
        while written < count - 1:
            n = min(500, count - 1 - written)
            batch = tuple(
                NewEvent("bench_tick", {"i": written + k, "note": note}, "router") for k in range(n)
            )
            await service.execute(job_id, RecordAgentEvents("router", batch), fence)
            written += n
        await service.execute(job_id, CancelJob())
    finally:
        await db.dispose()
    return job_id


def seed(cfg: Config, url: str, jobs: int, long_events: int) -> Seeded:
    """Template, copies and the long job; returns what was written."""
    events = template(cfg, url)
    log(f"seeding {jobs:,} jobs of {len(events)} events and one job of {long_events:,} events")
    started = time.monotonic()
    job_ids = asyncio.run(seed_jobs(url, events, jobs))
    long_job = asyncio.run(seed_long_job(url, long_events))
    total = jobs * len(events) + long_events + len(events)
    log(f"seeded {total:,} events in {time.monotonic() - started:.0f} s")
    return Seeded(url, [events[0]["job_id"], *job_ids], long_job, total)


_SEEDED: dict[str, Seeded] = {}


def seeded(cfg: Config, dbs: Any, backend: str) -> Seeded:
    """The run's seeded database of `backend` (created on first use, dropped at the end of the run)."""
    from bench.common import app_url, migrate, run_async

    if backend not in _SEEDED:
        if backend == "postgres":
            target: Any = run_async(dbs.create_pg("seeded"))
        else:
            target = dbs.sqlite_file("seeded")
        url = app_url(backend, target)
        run_async(migrate(url))
        found = seed(cfg, url, cfg.size(10_000, 100_000), cfg.size(5_000, 50_000))
        found.target = str(target)
        _SEEDED[backend] = found
    return _SEEDED[backend]
