"""Trivial jobs: router → aggregator jobs submitted in bulk (concurrent POSTs by wrk), time until all
completed, against procrastinate running a no-op task with the same worker concurrency."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import threading
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from app.domain.canonical import parse_ms
from bench.common import (
    PYTHON,
    ROOT,
    Config,
    Databases,
    Row,
    Sample,
    Server,
    Table,
    Worker,
    app_url,
    cpu_row,
    log,
    migrate,
    per_op_ms,
    retried,
    run_async,
    terminate,
    trivial_manifest,
    wrk,
)
from bench.cpu import CpuMeter

CONCURRENCY = 8  # jobs a worker runs at once: MIRROR_NEURON_MAX_ACTIVE_JOBS and procrastinate's --concurrency
SUBMITTERS = 16  # concurrent POSTs (wrk connections) and concurrent procrastinate defers


class Counter:
    """Counts jobs by status straight from the database."""

    def __init__(self, backend: str, target: str) -> None:
        self.backend = backend
        self.target = target
        self._pg: Any = None
        self._lite: sqlite3.Connection | None = None

    def __enter__(self) -> Counter:
        if self.backend == "postgres":
            import psycopg

            self._pg = psycopg.connect(self.target, autocommit=True)
        else:
            self._lite = sqlite3.connect(self.target, isolation_level=None)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._pg is not None:
            self._pg.close()
        if self._lite is not None:
            self._lite.close()

    def _query(self, sql: str) -> Any:
        if self._pg is not None:
            return self._pg.execute(sql).fetchone()
        assert self._lite is not None
        return self._lite.execute(sql).fetchone()

    def node_online(self, name: str) -> bool:
        """Whether the node called `name` has registered (SPEC §10.3)."""
        row = self._query(f"SELECT count(*) FROM nodes WHERE name = '{name}' AND status = 'alive'")
        return bool(row[0])

    def counts(self) -> tuple[int, int, int]:
        """(all jobs, completed, failed or cancelled)."""
        row = self._query(
            "SELECT count(*), sum(CASE WHEN status = 'completed' THEN 1 ELSE 0 END), "
            "sum(CASE WHEN status IN ('failed', 'cancelled') THEN 1 ELSE 0 END) FROM jobs"
        )
        return int(row[0]), int(row[1] or 0), int(row[2] or 0)

    def status(self, job_id: str) -> str | None:
        if self._pg is not None:
            row = self._pg.execute("SELECT status FROM jobs WHERE job_id = %s", (job_id,)).fetchone()
        else:
            assert self._lite is not None
            row = self._lite.execute("SELECT status FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        return None if row is None else str(row[0])

    def last_update_ms(self) -> int:
        row = self._query("SELECT max(updated_at) FROM jobs")
        return parse_ms(row[0])


@dataclass
class Run:
    """One run: jobs/s, and CPU ms per job of each process and of its Postgres backends
    (`api`, `api:pg`, `worker`, `worker:pg`; one-process runs have only `api`)."""

    rate: float
    cpu_ms: dict[str, float]

    def ms(self, *keys: str) -> float:
        return sum(self.cpu_ms.get(k, 0.0) for k in keys)


def ours(
    cfg: Config, server: Server, backend: str, target: str, jobs: int, body_file: Path, worker: Worker | None = None
) -> Run:
    """Submit `jobs` trivial jobs with wrk; jobs/s until the last one completed, and CPU per job."""
    quota = -(-jobs // 2)
    env = {"BENCH_BODY_FILE": str(body_file), "BENCH_QUOTA": str(quota)}
    with Counter(backend, target) as counter:
        if worker is not None:  # the clock starts once the worker node is up, like procrastinate's
            deadline = time.monotonic() + 60
            while not counter.node_online(f"bench-{worker.name}"):
                worker.check()
                if time.monotonic() > deadline:
                    raise RuntimeError("the worker node did not register in 60 s")
                time.sleep(0.05)
        before, done_before, _ = counter.counts()
        procs: list[subprocess.Popen[str]] = []
        result: dict[str, Any] = {}

        def submit() -> None:
            result["wrk"] = wrk(
                server.base + "/api/v1/jobs", script="post_jobs.lua", connections=SUBMITTERS,
                seconds=600, env=env, proc_hook=procs.append,
            )

        assert server.proc is not None
        groups: dict[str, Any] = {"api": server.proc.pid}
        if worker is not None and worker.proc is not None:
            groups["worker"] = worker.proc.pid
        meter = CpuMeter(groups, postgres=backend == "postgres").start()
        started = time.time()
        thread = threading.Thread(target=submit)
        thread.start()
        deadline = time.monotonic() + 600
        while True:
            total, completed, broken = counter.counts()
            submitted = total - before
            if procs and submitted >= jobs and procs[0].poll() is None:
                procs[0].send_signal(signal.SIGINT)  # every thread reached its quota
            if not thread.is_alive() and completed - done_before + broken >= submitted:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"trivial jobs: {completed - done_before} of {submitted} completed in 600 s")
            time.sleep(0.05)
        thread.join()
        cpu = meter.stop()
        if broken:
            log(f"  {broken} jobs failed or were cancelled")
        elapsed = counter.last_update_ms() / 1000 - started
    return Run(submitted / elapsed, {k: per_op_ms(v, submitted) for k, v in cpu.items()})


def procrastinate(cfg: Config, dsn: str, jobs: int) -> Run:
    """procrastinate: a worker process at CONCURRENCY, SUBMITTERS concurrent defers, until all succeeded.
    CPU per job: `worker` (+ `:pg`) measured here over the deferring process's life, `api` (+ `:pg`)
    the deferrer's own figures over its defer loop."""
    subprocess.run([PYTHON, "-m", "bench.peers", "procrastinate-schema", "--target", dsn], cwd=ROOT, check=True,
                   capture_output=True)
    worker = subprocess.Popen(
        [PYTHON, "-m", "bench.peers", "procrastinate-worker", "--target", dsn, "--concurrency", str(CONCURRENCY)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        assert worker.stdout is not None
        if worker.stdout.readline().strip() != "ready":
            raise RuntimeError("the procrastinate worker did not start")
        time.sleep(0.5)
        meter = CpuMeter({"worker": worker.pid}).start()
        out = subprocess.run(
            [PYTHON, "-m", "bench.peers", "procrastinate-defer", "--target", dsn, "--jobs", str(jobs),
             "--deferrers", str(SUBMITTERS)],
            cwd=ROOT, capture_output=True, text=True, check=True,
        ).stdout
        cpu = {k: per_op_ms(v, jobs) for k, v in meter.stop().items()}
    finally:
        terminate(worker)
    data = json.loads(out.strip().splitlines()[-1])
    return Run(float(data["rate"]), {**cpu, "api": float(data["cpu_ms"]), "api:pg": float(data["pg_cpu_ms"])})


def run(cfg: Config, dbs: Databases) -> Table:
    table = Table(
        f"Trivial jobs: router → aggregator, submitted by {SUBMITTERS} concurrent POSTs, until all completed, "
        f"vs procrastinate no-op tasks (worker concurrency {CONCURRENCY} for both)"
    )
    jobs = cfg.size(300, 2000)
    body_file = cfg.workdir / "trivial_body.json"
    body_file.write_text(json.dumps(trivial_manifest("bench_trivial")))
    peer_runs: list[Run] = []

    def peer_run() -> Run:
        # procrastinate gets a fresh database per run, like our fresh server per run.
        pdsn = run_async(dbs.create_pg("procrastinate"))
        try:
            return procrastinate(cfg, pdsn, jobs)
        finally:
            run_async(dbs.drop_pg(pdsn))

    def our_run(backend: str, split: bool) -> Run:
        target = run_async(dbs.create_pg("trivial")) if backend == "postgres" else str(dbs.sqlite_file("trivial"))
        try:
            url = app_url(backend, target)
            run_async(migrate(url))
            if not split:
                with Server(cfg, url, f"trivial-{backend}", MIRROR_NEURON_MAX_ACTIVE_JOBS=str(CONCURRENCY)) as server:
                    return ours(cfg, server, backend, target, jobs, body_file)
            with (
                Server(cfg, url, f"trivial-{backend}-api", MIRROR_NEURON_RUNTIME_ENABLED="0") as server,
                Worker(server, f"trivial-{backend}-worker", MIRROR_NEURON_MAX_ACTIVE_JOBS=str(CONCURRENCY)) as worker,
            ):
                return ours(cfg, server, backend, target, jobs, body_file, worker)
        finally:
            if backend == "postgres":
                run_async(dbs.drop_pg(target))

    # Ours as one process (API and runtime), and as procrastinate runs: the submits through one
    # process (an API-only server; procrastinate's deferrer), the jobs in another (a worker).
    variants = [(b, False) for b in cfg.backends] + [("postgres", True)] * ("postgres" in cfg.backends)
    results: dict[tuple[str, bool], list[Run]] = {v: [] for v in variants}

    for i in range(cfg.runs):
        peer_runs.append(retried("procrastinate", peer_run))
        for backend, split in variants:
            run_ = retried(f"trivial {backend}", partial(our_run, backend, split))
            results[(backend, split)].append(run_)
            shape = "API + worker" if split else "one process"
            cpu = ", ".join(f"{k} {v:.2f}" for k, v in run_.cpu_ms.items())
            pcpu = ", ".join(f"{k} {v:.2f}" for k, v in peer_runs[-1].cpu_ms.items())
            log(f"trivial run {i + 1}: {backend} ({shape}) {run_.rate:.0f} jobs/s (CPU ms/job {cpu}), "
                f"procrastinate {peer_runs[-1].rate:.0f} jobs/s ({pcpu})")
    peer = Sample.of([r.rate for r in peer_runs])
    for backend, split in variants:
        runs = results[(backend, split)]
        mine = Sample.of([r.rate for r in runs])
        ratio = mine.median / peer.median
        what = f"{jobs} trivial jobs, " + ("API server + worker node" if split else "one process")
        target = 1.5 if split else 1.2
        table.add(Row(what, backend, mine, "jobs/s", "procrastinate (postgres)", peer, ratio, f"≥ {target:g}×",
                      ratio >= target))
        short = "API + worker" if split else "one process"
        if split:
            table.add(cpu_row(f"trivial jobs ({short}): worker + Postgres CPU per job", backend,
                              [r.ms("worker", "worker:pg") for r in runs], "procrastinate worker's",
                              [r.ms("worker", "worker:pg") for r in peer_runs], at_most=1.5))
            table.add(cpu_row(f"trivial jobs ({short}): worker process CPU per job", backend,
                              [r.ms("worker") for r in runs], "procrastinate worker's",
                              [r.ms("worker") for r in peer_runs]))
            table.add(cpu_row(f"trivial jobs ({short}): API (submit) + Postgres CPU per job", backend,
                              [r.ms("api", "api:pg") for r in runs], "procrastinate defer's",
                              [r.ms("api", "api:pg") for r in peer_runs]))
        every = ("api", "api:pg", "worker", "worker:pg")
        table.add(cpu_row(f"trivial jobs ({short}): all processes + Postgres CPU per job", backend,
                          [r.ms(*every) for r in runs], "procrastinate's (defer + worker)",
                          [r.ms(*every) for r in peer_runs]))
    table.notes.append(
        "Both clocks start before the first submission: ours ends at the last job's completion timestamp, "
        "procrastinate's when its jobs table shows every job succeeded. A trivial job is 12 events in 5 "
        "commands (submit, admit, start, two steps) plus its lease, committed in three transactions shared "
        "with other jobs by the group commit: the submit with its admission (API + worker: the worker admits "
        "in batches), the claim, and the start with both steps chained; procrastinate's no-op is one row."
    )
    table.notes.append(
        "One process: `mirror-neuron serve` answers the POSTs and runs the jobs. API server + worker node: "
        "an API-only server (MIRROR_NEURON_RUNTIME_ENABLED=0) takes the POSTs and a `mirror-neuron worker` "
        "runs the jobs, as procrastinate's deferrer process and its worker process do; its clock starts once "
        "the worker node has registered."
    )
    table.notes.append(
        "CPU per job: each process's CPU seconds (and its Postgres backends') from the first submission to the "
        "last completion ÷ jobs (bench/cpu.py). procrastinate: its worker measured the same way over the deferring "
        "process's life; its deferrer measures its own defer loop (\"API\" rows)."
    )
    if "sqlite" in cfg.backends:
        table.notes.append("procrastinate needs Postgres: the SQLite row is compared with procrastinate on Postgres.")
    return table
