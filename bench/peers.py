"""The peers and limits, each run as its own process: `python -m bench.peers <name> [options]`.

Every subcommand prints one JSON line `{"rate": ..., ...}` on stdout. No peer code is copied:
`eventsourcing` and `procrastinate` are the libraries installed from the `bench` extra.

  raw-pg        asyncpg BEGIN/INSERT/COMMIT of one row per transaction on N connections
  raw-sqlite    stdlib sqlite3 (WAL) BEGIN IMMEDIATE/INSERT/COMMIT of one row, N threads
  eventsourcing the `eventsourcing` library saving a new one-event aggregate per transaction, N threads
  procrastinate-worker   a procrastinate worker running the no-op task at concurrency N
  procrastinate-defer    defer N no-op jobs with C concurrent deferrers, then wait for all to finish
  semaphore     the fan-out baseline: run the commands of a JSON file under asyncio.Semaphore(N)
  pg-scan       keyset scan of the events table (stream_id, sequence) in batches, like rebuild
  sqlite-scan   the same on SQLite
  pg-events     fetch one stream's events ordered by sequence (the limit of GET /jobs/{id}/events)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench.cpu import SelfMeter


def _emit(**data: Any) -> None:
    print(json.dumps(data), flush=True)


def _cpu_per_op(meter: SelfMeter, count: int) -> dict[str, float]:
    """The peer's CPU ms per operation over its timed loop: its own and its Postgres backends'."""
    seconds = meter.stop()
    return {"cpu_ms": seconds["cpu"] * 1000 / max(count, 1), "pg_cpu_ms": seconds["pg_cpu"] * 1000 / max(count, 1)}


def _payload(size: int) -> str:
    return json.dumps({"pad": "x" * max(size - 12, 0)})


# ------------------------------------------------------------------------------------ raw limits


async def raw_pg(dsn: str, connections: int, seconds: float, size: int) -> None:
    import asyncpg

    setup = await asyncpg.connect(dsn)
    await setup.execute(
        "CREATE TABLE IF NOT EXISTS bench_raw (id BIGSERIAL PRIMARY KEY, stream TEXT NOT NULL, payload TEXT NOT NULL)"
    )
    await setup.close()
    # The server's 100 connections are shared with other users: take as many as we can, up to one
    # per client; the clients share them (as the HTTP clients of our server share its pool).
    conns: list[Any] = []
    for _ in range(connections):
        try:
            conns.append(await asyncpg.connect(dsn))
        except asyncpg.TooManyConnectionsError:
            break
    if len(conns) < min(connections, 8):
        raise SystemExit(f"only {len(conns)} connections available")
    free: asyncio.Queue[Any] = asyncio.Queue()
    for c in conns:
        free.put_nowait(c)
    payload = _payload(size)
    count = 0
    stop = time.perf_counter() + seconds

    async def loop(i: int) -> None:
        nonlocal count
        while time.perf_counter() < stop:
            conn = await free.get()
            try:
                async with conn.transaction():
                    await conn.execute("INSERT INTO bench_raw (stream, payload) VALUES ($1, $2)", f"s{i}", payload)
            finally:
                free.put_nowait(conn)
            count += 1

    meter = SelfMeter(postgres=True)
    started = time.perf_counter()
    await asyncio.gather(*(loop(i) for i in range(connections)))
    elapsed = time.perf_counter() - started
    cpu = _cpu_per_op(meter, count)
    for c in conns:
        await c.close()
    _emit(rate=count / elapsed, count=count, connections=len(conns), **cpu)


def raw_sqlite(path: str, threads: int, seconds: float, size: int) -> None:
    """SQLite has one writer at a time: N threads share one connection behind a lock (as the app
    has one writer connection per process); sqlite's own busy-wait between connections is far slower."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=30, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")  # what the app uses (a 2xx means on disk)
    conn.execute("CREATE TABLE IF NOT EXISTS bench_raw (id INTEGER PRIMARY KEY, stream TEXT, payload TEXT)")
    payload = _payload(size)
    counts = [0] * threads
    lock = threading.Lock()
    stop = time.perf_counter() + seconds

    def loop(i: int) -> None:
        while time.perf_counter() < stop:
            with lock:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("INSERT INTO bench_raw (stream, payload) VALUES (?, ?)", (f"s{i}", payload))
                conn.execute("COMMIT")
            counts[i] += 1

    meter = SelfMeter(postgres=False)
    started = time.perf_counter()
    workers = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - started
    cpu = _cpu_per_op(meter, sum(counts))
    conn.close()
    _emit(rate=sum(counts) / elapsed, count=sum(counts), **cpu)


# ------------------------------------------------------------------------------------ eventsourcing


def eventsourcing_peer(backend: str, target: str, threads: int, seconds: float, size: int) -> None:
    from eventsourcing.application import Application
    from eventsourcing.domain import Aggregate

    class Job(Aggregate):
        def __init__(self, manifest: dict[str, Any]) -> None:
            self.manifest = manifest

    class Jobs(Application):
        pass

    if backend == "postgres":
        from urllib.parse import urlparse

        url = urlparse(target)
        env = {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": url.path.lstrip("/"),
            "POSTGRES_HOST": url.hostname or "127.0.0.1",
            "POSTGRES_PORT": str(url.port or 5432),
            "POSTGRES_USER": url.username or "postgres",
            "POSTGRES_PASSWORD": url.password or "",
            # At most 20 connections, like our server's pool (10 + 10 overflow) at any concurrency.
            "POSTGRES_POOL_SIZE": str(min(threads, 20)),
            "POSTGRES_MAX_OVERFLOW": "0",
            "POSTGRES_CONN_MAX_AGE": "",
            "CREATE_TABLE": "y",
        }
    else:
        env = {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": target, "SQLITE_LOCK_TIMEOUT": "30"}
    app = Jobs(env=env)
    manifest = json.loads(_payload(size))
    app.save(Job(manifest))  # creates the tables before the clock starts
    counts = [0] * threads
    stop = time.perf_counter() + seconds

    def loop(i: int) -> None:
        while time.perf_counter() < stop:
            app.save(Job(manifest))  # one new aggregate, one event, one transaction
            counts[i] += 1

    meter = SelfMeter(postgres=backend == "postgres")
    started = time.perf_counter()
    workers = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - started
    cpu = _cpu_per_op(meter, sum(counts))
    app.close()
    _emit(rate=sum(counts) / elapsed, count=sum(counts), **cpu)


# ------------------------------------------------------------------------------------ procrastinate


def _procrastinate_app(dsn: str) -> Any:
    import procrastinate

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=dsn))

    @app.task(name="noop")
    async def noop() -> None:
        return None

    return app


async def procrastinate_worker(dsn: str, concurrency: int) -> None:
    app = _procrastinate_app(dsn)
    async with app.open_async():
        print("ready", flush=True)
        await app.run_worker_async(concurrency=concurrency, wait=True, install_signal_handlers=True)


async def procrastinate_defer(dsn: str, jobs: int, deferrers: int, timeout: float) -> None:
    import psycopg

    app = _procrastinate_app(dsn)
    async with app.open_async():
        task = app.tasks["noop"]
        remaining = jobs
        meter = SelfMeter(postgres=True)
        started = time.perf_counter()

        async def defer() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                await task.defer_async()

        await asyncio.gather(*(defer() for _ in range(deferrers)))
        deferred = time.perf_counter() - started
        cpu = _cpu_per_op(meter, jobs)
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            deadline = time.perf_counter() + timeout
            while True:
                cur = await conn.execute("SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'")
                row = await cur.fetchone()
                if row is not None and row[0] >= jobs:
                    break
                if time.perf_counter() > deadline:
                    raise SystemExit(f"procrastinate finished {row} of {jobs} jobs in {timeout} s")
                await asyncio.sleep(0.02)
            cur = await conn.execute(
                "SELECT extract(epoch FROM max(at)) FROM procrastinate_events WHERE type = 'succeeded'"
            )
            last = (await cur.fetchone() or [None])[0]
    elapsed = time.perf_counter() - started
    _emit(rate=jobs / elapsed, seconds=elapsed, defer_seconds=deferred, last_event_epoch=float(last or 0), **cpu)


async def procrastinate_schema(dsn: str) -> None:
    app = _procrastinate_app(dsn)
    async with app.open_async():
        await app.schema_manager.apply_schema_async()
    _emit(rate=0)


# ------------------------------------------------------------------------------------ fan-out baseline


async def semaphore(commands_file: str, limit: int) -> None:
    """Run each {argv, cwd} of the file as a subprocess, at most `limit` at a time; capture stdout."""
    commands = json.loads(Path(commands_file).read_text())
    gate = asyncio.Semaphore(limit)
    outputs: list[Any] = [None] * len(commands)

    async def run(i: int, command: dict[str, Any]) -> None:
        async with gate:
            proc = await asyncio.create_subprocess_exec(
                *command["argv"], cwd=command["cwd"], stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
            )
            out, _ = await proc.communicate()
            if proc.returncode != 0:
                raise SystemExit(f"command {command['argv']} failed with {proc.returncode}")
            outputs[i] = json.loads(out)

    started = time.perf_counter()
    await asyncio.gather(*(run(i, c) for i, c in enumerate(commands)))
    elapsed = time.perf_counter() - started
    _emit(rate=len(commands) / elapsed, seconds=elapsed, prime_count=sum(o["prime_count"] for o in outputs))


# ------------------------------------------------------------------------------------ scans


async def pg_scan(dsn: str, batch: int) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    started = time.perf_counter()
    count = 0
    rows = await conn.fetch(
        "SELECT * FROM events WHERE job_id IS NOT NULL ORDER BY stream_id, sequence LIMIT $1", batch
    )
    while rows:
        count += len(rows)
        last = rows[-1]
        rows = await conn.fetch(
            "SELECT * FROM events WHERE job_id IS NOT NULL AND (stream_id, sequence) > ($1, $2)"
            " ORDER BY stream_id, sequence LIMIT $3",
            last["stream_id"], last["sequence"], batch,
        )
    elapsed = time.perf_counter() - started
    await conn.close()
    _emit(rate=count / elapsed, seconds=elapsed, count=count)


def sqlite_scan(path: str, batch: int) -> None:
    conn = sqlite3.connect(path)
    started = time.perf_counter()
    count = 0
    rows = conn.execute(
        "SELECT * FROM events WHERE job_id IS NOT NULL ORDER BY stream_id, sequence LIMIT ?", (batch,)
    ).fetchall()
    while rows:
        count += len(rows)
        last = rows[-1]
        rows = conn.execute(
            "SELECT * FROM events WHERE job_id IS NOT NULL AND (stream_id, sequence) > (?1, ?2)"
            " ORDER BY stream_id, sequence LIMIT ?3",
            (last[1], last[2], batch),
        ).fetchall()
    elapsed = time.perf_counter() - started
    _emit(rate=count / elapsed, seconds=elapsed, count=count)


async def pg_events(dsn: str, stream_id: str, runs: int) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        rows = await conn.fetch("SELECT * FROM events WHERE stream_id = $1 ORDER BY sequence", stream_id)
        times.append(time.perf_counter() - started)
    await conn.close()
    _emit(rate=len(rows) / min(times), times=times, count=len(rows))


def sqlite_events(path: str, stream_id: str, runs: int) -> None:
    conn = sqlite3.connect(path)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        rows = conn.execute("SELECT * FROM events WHERE stream_id = ? ORDER BY sequence", (stream_id,)).fetchall()
        times.append(time.perf_counter() - started)
    _emit(rate=len(rows) / min(times), times=times, count=len(rows))


# ------------------------------------------------------------------------------------ CLI


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.peers", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("raw-pg", "raw-sqlite", "eventsourcing"):
        s = sub.add_parser(name)
        s.add_argument("--target", required=True, help="libpq DSN or SQLite file")
        s.add_argument("--concurrency", type=int, required=True)
        s.add_argument("--seconds", type=float, required=True)
        s.add_argument("--payload-bytes", type=int, default=1000)
        s.add_argument("--backend", default="postgres")
    s = sub.add_parser("procrastinate-schema")
    s.add_argument("--target", required=True)
    s = sub.add_parser("procrastinate-worker")
    s.add_argument("--target", required=True)
    s.add_argument("--concurrency", type=int, required=True)
    s = sub.add_parser("procrastinate-defer")
    s.add_argument("--target", required=True)
    s.add_argument("--jobs", type=int, required=True)
    s.add_argument("--deferrers", type=int, default=16)
    s.add_argument("--timeout", type=float, default=600)
    s = sub.add_parser("semaphore")
    s.add_argument("--commands", required=True)
    s.add_argument("--limit", type=int, default=4)
    for name in ("pg-scan", "sqlite-scan"):
        s = sub.add_parser(name)
        s.add_argument("--target", required=True)
        s.add_argument("--batch", type=int, default=5000)
    for name in ("pg-events", "sqlite-events"):
        s = sub.add_parser(name)
        s.add_argument("--target", required=True)
        s.add_argument("--stream", required=True)
        s.add_argument("--runs", type=int, default=3)
    a = p.parse_args(argv)
    match a.cmd:
        case "raw-pg":
            asyncio.run(raw_pg(a.target, a.concurrency, a.seconds, a.payload_bytes))
        case "raw-sqlite":
            raw_sqlite(a.target, a.concurrency, a.seconds, a.payload_bytes)
        case "eventsourcing":
            eventsourcing_peer(a.backend, a.target, a.concurrency, a.seconds, a.payload_bytes)
        case "procrastinate-schema":
            asyncio.run(procrastinate_schema(a.target))
        case "procrastinate-worker":
            asyncio.run(procrastinate_worker(a.target, a.concurrency))
        case "procrastinate-defer":
            asyncio.run(procrastinate_defer(a.target, a.jobs, a.deferrers, a.timeout))
        case "semaphore":
            asyncio.run(semaphore(a.commands, a.limit))
        case "pg-scan":
            asyncio.run(pg_scan(a.target, a.batch))
        case "sqlite-scan":
            sqlite_scan(a.target, a.batch)
        case "pg-events":
            asyncio.run(pg_events(a.target, a.stream, a.runs))
        case "sqlite-events":
            sqlite_events(a.target, a.stream, a.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
