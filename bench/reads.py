"""Reads: `GET /jobs/{id}` and `GET /jobs?limit=100` p50/p99 at 32 concurrent clients (wrk) with 100k jobs
stored, and `GET /jobs/{id}/events` of a 50k-event job as JSON and NDJSON."""

from __future__ import annotations

import contextlib
import http.client
import json
import random
import subprocess
import time
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
    cpu_row,
    log,
    per_op_ms,
    retried,
    wrk,
)
from bench.cpu import measured
from bench.floor import FloorServer
from bench.seed import seeded

CLIENTS = 32


def fetch_seconds(server: Server, path: str, accept: str) -> tuple[float, int]:
    """Time to the last byte of one GET (the body is read, not parsed); returns (seconds, bytes)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=300)
    started = time.perf_counter()
    conn.request("GET", path, headers={"Accept": accept})
    response = conn.getresponse()
    size = 0
    while chunk := response.read(1 << 16):
        size += len(chunk)
    elapsed = time.perf_counter() - started
    conn.close()
    if response.status != 200:
        raise RuntimeError(f"GET {path} answered {response.status}")
    return elapsed, size


def raw_events_seconds(backend: str, target: str, stream: str, runs: int) -> list[float]:
    name = "pg-events" if backend == "postgres" else "sqlite-events"
    out = subprocess.run(
        [PYTHON, "-m", "bench.peers", name, "--target", target, "--stream", stream, "--runs", str(runs)],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout
    return [float(t) for t in json.loads(out.strip().splitlines()[-1])["times"]]


def latencies(
    url: str, pid: int, script: str, seconds: float, env: dict[str, str], postgres: bool
) -> tuple[float, float, float, float, float]:
    """(p50 ms, p99 ms, req/s, server CPU ms/request, its Postgres backends' CPU ms/request) of one wrk run
    at CLIENTS connections; raises on any failed answer."""

    def once() -> tuple[Any, dict[str, float]]:
        with measured({"server": pid}, postgres=postgres) as cpu:
            result = wrk(url, script=script, connections=CLIENTS, seconds=seconds, env=env)
        return result, cpu()

    r, cpu = retried("wrk", once)
    if r.non2xx or r.errors:
        raise RuntimeError(f"{url}: {r.non2xx} non-2xx answers, {r.errors} socket errors")
    return r.p50_ms, r.p99_ms, r.rps, per_op_ms(cpu["server"], r.requests), per_op_ms(cpu.get("server:pg", 0.0), r.requests)


def run(cfg: Config, dbs: Databases) -> Table:
    seconds = cfg.size(4, 8)
    table = Table(f"Reads: {CLIENTS} concurrent clients (wrk), latency per request")
    for backend in cfg.backends:
        pg = backend == "postgres"
        data = seeded(cfg, dbs, backend)
        ids = cfg.workdir / f"ids_{backend}.txt"
        ids.write_text("\n".join(random.sample(data.job_ids, min(2000, len(data.job_ids)))) + "\n")
        results: dict[str, list[tuple[float, float, float, float, float]]] = {"health": [], "job": [], "list": []}
        events: dict[str, list[float]] = {"json": [], "ndjson": []}
        sizes: dict[str, int] = {}
        floor: dict[str, list[tuple[float, float, float, float, float]]] = {"job": [], "list": []}
        with contextlib.ExitStack() as stack:
            server = stack.enter_context(Server(cfg, data.url, f"reads-{backend}", MIRROR_NEURON_RUNTIME_ENABLED="0"))
            floor_server = (
                stack.enter_context(FloorServer(cfg, data.target, "reads")) if backend == "postgres" else None
            )
            api = server.base + "/api/v1"
            env = {"BENCH_IDS_FILE": str(ids)}
            wrk(api + "/jobs/x", script="get_job.lua", connections=CLIENTS, seconds=2, env=env)  # warm-up
            if floor_server is not None:
                wrk(floor_server.base + "/api/v1/jobs/x", script="get_job.lua", connections=CLIENTS, seconds=2, env=env)
            for i in range(cfg.runs):
                for key, url, script in (
                    ("health", api + "/health", "get.lua"),
                    ("job", api + "/jobs/x", "get_job.lua"),
                    ("list", api + "/jobs?limit=100", "get.lua"),
                ):
                    assert server.proc is not None
                    results[key].append(latencies(url, server.proc.pid, script, seconds, env, pg))
                    if floor_server is not None and floor_server.proc is not None and key in floor:
                        floor[key].append(latencies(floor_server.base + url[len(server.base):], floor_server.proc.pid,
                                                    script, seconds, env, pg))
                for mode, accept in (("json", "application/json"), ("ndjson", "application/x-ndjson")):
                    elapsed, sizes[mode] = retried("events", lambda a=accept, j=data.long_job, s=server: fetch_seconds(
                        s, f"/api/v1/jobs/{j}/events", a))
                    events[mode].append(elapsed)
                log(f"reads {backend} run {i + 1}: job p99 {results['job'][-1][1]:.1f} ms, "
                    f"list p99 {results['list'][-1][1]:.1f} ms, events json {events['json'][-1]:.2f} s, "
                    f"ndjson {events['ndjson'][-1]:.2f} s")
        jobs_stored = len(data.job_ids)
        health = results["health"]
        for key, label in (("job", "GET /jobs/{id}"), ("list", "GET /jobs?limit=100")):
            p50 = Sample.of([r[0] for r in results[key]])
            p99 = Sample.of([r[1] for r in results[key]])
            h50 = Sample.of([r[0] for r in health])
            h99 = Sample.of([r[1] for r in health])
            table.add(Row(f"{label} p50, {jobs_stored:,} jobs", backend, p50, "ms", "GET /health (no db)", h50,
                          p50.median / h50.median))
            table.add(Row(f"{label} p99, {jobs_stored:,} jobs", backend, p99, "ms", "GET /health (no db)", h99,
                          p99.median / h99.median))
            table.add(Row(f"{label} throughput", backend, Sample.of([r[2] for r in results[key]]), "req/s",
                          "GET /health (no db)", Sample.of([r[2] for r in health]),
                          Sample.of([r[2] for r in results[key]]).median / Sample.of([r[2] for r in health]).median))
            if floor[key]:
                f50 = Sample.of([r[0] for r in floor[key]])
                f99 = Sample.of([r[1] for r in floor[key]])
                limit = 1.1 if key == "job" else 1.25
                table.add(Row(f"{label} p99", backend, p99, "ms", "stack floor p99 (see note)", f99,
                              p99.median / f99.median, f"≤ {limit:g}×", p99.median / f99.median <= limit))
                table.add(Row(f"stack floor: {label} p50", backend, f50, "ms"))
                table.add(Row(f"stack floor: {label} p99", backend, f99, "ms"))
                table.add(Row(f"stack floor: {label} throughput", backend,
                              Sample.of([r[2] for r in floor[key]]), "req/s"))
                table.add(cpu_row(f"{label}: API process CPU", backend, [r[3] for r in results[key]],
                                  "stack floor's", [r[3] for r in floor[key]]))
                table.add(cpu_row(f"{label}: Postgres CPU", backend, [r[4] for r in results[key]],
                                  "stack floor's", [r[4] for r in floor[key]]))
            else:
                table.add(cpu_row(f"{label}: API process CPU", backend, [r[3] for r in results[key]],
                                  "GET /health's", [r[3] for r in health]))
        raw = Sample.of(raw_events_seconds(backend, data.target, data.long_job, cfg.runs))
        long_events = cfg.size(5_000, 50_000)
        for mode in ("json", "ndjson"):
            mine = Sample.of(events[mode])
            table.add(Row(f"GET /jobs/{{id}}/events, {long_events:,} events, {mode} ({sizes[mode] / 2**20:.1f} MiB)",
                          backend, mine, "s", "driver fetch of the rows", raw, mine.median / raw.median))
    table.notes.append(
        f"wrk runs of {seconds} s, {CLIENTS} connections; GET /jobs/{{id}} picks a random id among 2,000 per request. "
        "The server runs with the runtime disabled. The events rows time one full response (time to last byte) "
        "for a job of the long-job size, against the driver alone fetching the same rows (no HTTP, no JSON)."
    )
    table.notes.append(
        "Stack floor (Postgres): bench/floor.py, a Litestar app served as ours is (uvicorn, uvloop, httptools, one "
        "process) that makes the same reads straight through asyncpg (the job row, its agents and 25 newest events; "
        "the page's 100 rows) and returns the rows as the driver gives them — no shaping, no SQLAlchemy. Its "
        "latency is what the stack and the machine leave at 32 clients with no work of ours."
    )
    table.notes.append(
        "CPU per request: the server's process CPU (and its Postgres backends') over each wrk run ÷ requests answered."
    )
    return table
