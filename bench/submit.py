"""Submit: `POST /jobs` over HTTP (wrk) against the eventsourcing library and a raw INSERT+COMMIT loop."""

from __future__ import annotations

import contextlib
import json
import subprocess
from dataclasses import dataclass
from typing import Any

from bench.common import (
    PYTHON,
    ROOT,
    Config,
    Databases,
    Row,
    Sample,
    Server,
    Table,
    app_url,
    cpu_row,
    log,
    migrate,
    per_op_ms,
    retried,
    run_async,
    trivial_manifest,
    wrk,
)
from bench.cpu import measured
from bench.floor import FloorServer

CONCURRENCY = (16, 64)


@dataclass
class Run:
    """One measurement: the rate, and CPU ms per operation of the process(es) and of their Postgres backends."""

    rate: float
    cpu_ms: float
    pg_ms: float

    @property
    def total_ms(self) -> float:
        return self.cpu_ms + self.pg_ms


def peer(name: str, backend: str, target: str, concurrency: int, seconds: float, payload: int) -> Run:
    """Run one peer process (it measures its own CPU over its timed loop)."""

    def once() -> Run:
        out = subprocess.run(
            [PYTHON, "-m", "bench.peers", name, "--backend", backend, "--target", target,
             "--concurrency", str(concurrency), "--seconds", str(seconds), "--payload-bytes", str(payload)],
            cwd=ROOT, capture_output=True, text=True, check=True,
        ).stdout
        data = json.loads(out.strip().splitlines()[-1])
        return Run(float(data["rate"]), float(data["cpu_ms"]), float(data["pg_cpu_ms"]))

    return retried(f"{name} at {concurrency}", once)  # type: ignore[no-any-return]


def posts(url: str, pid: int, connections: int, seconds: float, env: dict[str, str], postgres: bool) -> Run:
    """One wrk run of POSTs against the server `pid`, with that process's CPU (and its backends').
    Logs (does not raise on) non-2xx answers and socket errors."""

    def once() -> tuple[Any, dict[str, float]]:
        with measured({"server": pid}, postgres=postgres) as cpu:
            result = wrk(url, script="post_jobs.lua", connections=connections, seconds=seconds, env=env)
        return result, cpu()

    result, cpu = retried("wrk", once)
    if result.non2xx or result.errors:
        log(f"  wrk {url}: {result.non2xx} non-2xx answers, {result.errors} socket errors")
    return Run(result.rps, per_op_ms(cpu["server"], result.requests), per_op_ms(cpu.get("server:pg", 0.0), result.requests))


def run(cfg: Config, dbs: Databases) -> Table:
    table = Table("Submit: POST /api/v1/jobs (wrk) vs eventsourcing (one event per transaction) and raw INSERT+COMMIT")
    seconds = cfg.size(3, 8)
    body = json.dumps(trivial_manifest("bench_submit"))
    body_file = cfg.workdir / "submit_body.json"
    body_file.write_text(body)
    # The peers write a payload the size of our job_submitted event (the normalised manifest and more).
    payload = 2 * len(body)
    for backend in cfg.backends:
        target: Any = run_async(dbs.create_pg("submit")) if backend == "postgres" else dbs.sqlite_file("submit")
        peer_targets = {
            "eventsourcing": run_async(dbs.create_pg("es")) if backend == "postgres" else str(dbs.sqlite_file("es")),
            "raw": target if backend == "postgres" else str(dbs.sqlite_file("raw")),
        }
        url = app_url(backend, target)
        run_async(migrate(url))
        pg = backend == "postgres"
        ours: dict[int, list[Run]] = {c: [] for c in CONCURRENCY}
        es: dict[int, list[Run]] = {c: [] for c in CONCURRENCY}
        raw: dict[int, list[Run]] = {c: [] for c in CONCURRENCY}
        env = {"BENCH_BODY_FILE": str(body_file)}
        floor: dict[int, list[Run]] = {c: [] for c in CONCURRENCY}
        floor_dsn = run_async(dbs.create_pg("floor")) if pg else None
        with contextlib.ExitStack() as stack:
            server = stack.enter_context(Server(cfg, url, f"submit-{backend}", MIRROR_NEURON_RUNTIME_ENABLED="0"))
            floor_server = stack.enter_context(FloorServer(cfg, floor_dsn, "submit")) if floor_dsn else None
            endpoint = server.base + "/api/v1/jobs"
            assert server.proc is not None
            wrk(endpoint, script="post_jobs.lua", connections=16, seconds=2, env=env)  # warm-up
            if floor_server is not None:
                wrk(floor_server.base + "/api/v1/jobs", script="post_jobs.lua", connections=16, seconds=2, env=env)
            for i in range(cfg.runs):
                for c in CONCURRENCY:
                    ours[c].append(posts(endpoint, server.proc.pid, c, seconds, env, pg))
                    if floor_server is not None and floor_server.proc is not None:
                        floor[c].append(posts(floor_server.base + "/api/v1/jobs", floor_server.proc.pid, c, seconds, env, pg))
                    es[c].append(peer("eventsourcing", backend, str(peer_targets["eventsourcing"]), c, seconds, payload))
                    raw_name = "raw-pg" if pg else "raw-sqlite"
                    raw[c].append(peer(raw_name, backend, str(peer_targets["raw"]), c, seconds, payload))
                    o = ours[c][-1]
                    log(f"submit {backend} c={c} run {i + 1}: ours {o.rate:.0f}/s ({o.cpu_ms:.2f}+{o.pg_ms:.2f} ms CPU), "
                        f"eventsourcing {es[c][-1].rate:.0f}/s ({es[c][-1].cpu_ms:.2f}+{es[c][-1].pg_ms:.2f}), "
                        f"raw {raw[c][-1].rate:.0f}/s"
                        + (f", stack floor {floor[c][-1].rate:.0f}/s ({floor[c][-1].cpu_ms:.2f}+{floor[c][-1].pg_ms:.2f})"
                           if floor[c] else ""))
        for c in CONCURRENCY:
            o, e, r = (Sample.of([x.rate for x in runs]) for runs in (ours[c], es[c], raw[c]))
            es_ratio, raw_ratio = o.median / e.median, o.median / r.median
            gate = c == 16
            es_target = 3 if pg else 1  # issue 22: ≥ 3× on Postgres, ≥ 1× on SQLite
            table.add(Row(f"submit, {c} clients", backend, o, "req/s", "eventsourcing", e, es_ratio,
                          f"≥ {es_target}×" if gate else "", es_ratio >= es_target if gate else None))
            table.add(Row(f"submit, {c} clients", backend, o, "req/s", "raw INSERT+COMMIT", r, raw_ratio))
            if floor[c]:
                f = Sample.of([x.rate for x in floor[c]])
                table.add(Row(f"submit, {c} clients", backend, o, "req/s", "stack floor (see note)", f,
                              o.median / f.median, "≥ 0.6×" if gate else "", o.median / f.median >= 0.6 if gate else None))
                table.add(Row(f"stack floor, {c} clients", backend, f, "req/s", "raw INSERT+COMMIT", r,
                              f.median / r.median))
                table.add(cpu_row(f"submit, {c} clients: API process CPU", backend, [x.cpu_ms for x in ours[c]],
                                  "stack floor's", [x.cpu_ms for x in floor[c]], at_most=1.6 if gate else None))
                table.add(cpu_row(f"submit, {c} clients: Postgres CPU", backend, [x.pg_ms for x in ours[c]],
                                  "stack floor's", [x.pg_ms for x in floor[c]]))
            table.add(cpu_row(f"submit, {c} clients: process + Postgres CPU", backend, [x.total_ms for x in ours[c]],
                              "eventsourcing's", [x.total_ms for x in es[c]]))
            table.add(cpu_row(f"submit, {c} clients: process + Postgres CPU", backend, [x.total_ms for x in ours[c]],
                              "raw INSERT+COMMIT's", [x.total_ms for x in raw[c]]))
        if backend == "postgres":
            run_async(dbs.drop_pg(str(target)))
            run_async(dbs.drop_pg(str(peer_targets["eventsourcing"])))
            if floor_dsn is not None:
                run_async(dbs.drop_pg(floor_dsn))
    table.notes.append(
        f"{seconds} s per wrk run (2 threads), {cfg.runs} runs interleaved with the peers; the server runs with "
        "MIRROR_NEURON_RUNTIME_ENABLED=0 so only the write path is measured."
    )
    table.notes.append(
        f"Peers write one row/event of {payload} bytes per transaction with the same number of concurrent "
        "clients: threads for eventsourcing (its pool capped at 20 connections, like our server's 10 + 10) "
        "and for SQLite; asyncio tasks over up to one asyncpg connection each for the raw Postgres loop "
        "(fewer when the shared server's 100 connections run short). The SQLite raw loop shares one "
        "connection behind a lock (SQLite has one writer; so does the app) with synchronous=FULL like the app."
    )
    table.notes.append(
        "Stack floor (Postgres): bench/floor.py, a Litestar app served as ours is (uvicorn, uvloop, httptools, "
        "one process) whose POST decodes the body and INSERTs it in one autocommit statement — no validation, "
        "events, hash chain or projections. The least a POST costs on this stack and machine."
    )
    table.notes.append(
        "CPU per request: the server's process CPU (and its Postgres backends') over each wrk run ÷ the requests "
        "answered (bench/cpu.py); the peers measure their own process and backends over their timed loop."
    )
    return table
