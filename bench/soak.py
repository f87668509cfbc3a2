"""Soak: thousands of jobs through two worker processes and an API-only server on Postgres.

    python -m bench.soak --jobs 5000 --workers 2

A fresh Postgres database; one `mirror-neuron serve` with MIRROR_NEURON_RUNTIME_ENABLED=0 (the
API, which also registers the examples/ bundles) and `--workers` `mirror-neuron worker`
processes. The driver keeps `--concurrency` jobs in flight, each one of a weighted mix of the
examples/ scenarios: routing only, executor chains, the prime sweep fan-out, the streaming
detector, failing twins, pause → external message → resume, cancels of running commands and
cancels right after submission. Meanwhile it samples the workers' RSS from /proc.

At the end every acknowledged job must exist and be terminal with the outcome its scenario
implies (zero lost), carry exactly one terminal event as its last (zero duplicates), and pass
the independent replay check of tests/replay.py against the API; `mirror-neuron verify` must find
the projections equal to a replay of the whole log; and each worker's RSS over the last
`--rss-window` jobs must be within 10 % of its RSS over the first (checked when the run has at
least twice that many jobs). Prints a summary; exits 1 when any criterion fails.

With faults (`--lost-acks 0.05 --partition-every 1000`) each worker reaches Postgres through a
fault proxy of the tests (tests/faultproxy.py) that loses that fraction of COMMIT replies, and
after every `--partition-every` finished jobs one worker (in turn) is cut off for
`--partition-seconds` (longer than its lease TTL): its jobs are taken over, and once healed it
finds itself declared lost and exits; it is started again, as a supervisor would. Every job's
stream is then also checked for any effect recorded twice (tests/runtime/network_faults.py), and
the RSS criterion is not applied (restarted workers are new processes).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.faultproxy import FaultProxy
from tests.replay import compare_with_api
from tests.runtime.network_faults import duplicate_effects

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
DEFAULT_PG_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
TERMINAL = ("completed", "failed", "cancelled")
TERMINAL_EVENTS = ("job_completed", "job_failed", "job_cancelled")
JOB_TIMEOUT_SECONDS = 300.0
POLL_SECONDS = 0.25
RETRY_SECONDS = 120.0
RSS_GROWTH_LIMIT = 0.10


# ------------------------------------------------------------------------------------ HTTP


class Api:
    """A tiny JSON client for one server; it retries while the database is unavailable, as clients should."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.retries = 0

    def _once(self, method: str, path: str, body: Any, headers: dict[str, str]) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def call(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        """One request; a 503 or a refused connection is retried for up to RETRY_SECONDS."""
        deadline = time.monotonic() + RETRY_SECONDS
        while True:
            try:
                status, answer = self._once(method, path, body, headers or {})
            except OSError:
                if time.monotonic() > deadline:
                    raise
            else:
                if status != 503 or time.monotonic() > deadline:
                    return status, answer
            self.retries += 1
            time.sleep(0.5)

    def status(self, job_id: str) -> str:
        return str(self.call("GET", f"/api/v1/jobs/{job_id}")[1]["job"]["status"])

    def events(self, job_id: str) -> list[dict[str, Any]]:
        status, body = self.call("GET", f"/api/v1/jobs/{job_id}/events")
        assert status == 200, body
        return list(body["data"])


def _until(predicate: Callable[[], Any], timeout: float = JOB_TIMEOUT_SECONDS) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(POLL_SECONDS)
    raise TimeoutError("timed out")


# ------------------------------------------------------------------------------------ scenarios


def _raw(name: str) -> dict[str, Any]:
    return dict(json.loads((EXAMPLES / "manifests" / name).read_text()))


def _cancellable() -> dict[str, Any]:
    """§13.5 Flow C's manifest; `sleep 299`, since tests on a shared machine reap `sleep 300`s."""
    manifest = _raw("cancel_running.json")
    manifest["nodes"][0]["config"]["command"] = "sleep 299"
    return manifest


def _has_event(api: Api, job_id: str, kind: str, agent_id: str | None = None) -> bool:
    return any(
        e["type"] == kind and (agent_id is None or e["agent_id"] == agent_id) for e in api.events(job_id)
    )


def _finish(api: Api, job_id: str) -> str:
    return str(_until(lambda: (s := api.status(job_id)) in TERMINAL and s))


def _pause_message_resume(api: Api, job_id: str) -> str:
    """§13.5 Flow A: pause a running job, message it while paused, resume it."""
    _until(lambda: _has_event(api, job_id, "message_processed", "root"))
    assert api.call("POST", f"/api/v1/jobs/{job_id}/pause")[0] == 200
    message = {"agent_id": "sink", "message": {"type": "manual_result", "payload": {"text": "soak"}}}
    assert api.call("POST", f"/api/v1/jobs/{job_id}/messages", message)[0] == 202
    assert api.call("POST", f"/api/v1/jobs/{job_id}/resume")[0] == 200
    return _finish(api, job_id)


def _cancel_running(api: Api, job_id: str) -> str:
    """§13.5 Flow C: cancel while the command runs."""
    _until(lambda: _has_event(api, job_id, "executor_lease_acquired", "sleeper"))
    assert api.call("POST", f"/api/v1/jobs/{job_id}/cancel")[0] == 200
    return _finish(api, job_id)


def _cancel_now(api: Api, job_id: str) -> str:
    """Cancel right after submission: pending, queued or just started."""
    assert api.call("POST", f"/api/v1/jobs/{job_id}/cancel")[0] == 200
    return _finish(api, job_id)


@dataclass(frozen=True)
class Scenario:
    """One kind of job: what to submit, what to do with it, and its expected final status."""

    name: str
    weight: int
    body: Callable[[], dict[str, Any]]
    expected: str
    drive: Callable[[Api, str], str] = _finish


SCENARIOS = (
    Scenario("research_flow", 28, lambda: _raw("research_flow.json"), "completed"),
    Scenario("shell_python_chain", 14, lambda: {"bundle_id": "shell_python_chain_v1"}, "completed"),
    Scenario("prime_sweep", 8, lambda: {"bundle_id": "prime_sweep_4_workers"}, "completed"),
    Scenario("streaming_peak", 4, lambda: {"bundle_id": "streaming_peak_demo_v1"}, "completed"),
    Scenario("fail_exit", 4, lambda: {"bundle_id": "shell_python_chain_fail_exit_v1"}, "failed"),
    Scenario("fail_pool", 4, lambda: {"bundle_id": "shell_python_chain_fail_pool_v1"}, "failed"),
    Scenario("pause_resume", 14, lambda: _raw("pause_resume.json"), "completed", _pause_message_resume),
    Scenario("cancel_running", 12, _cancellable, "cancelled", _cancel_running),
    Scenario("cancel_now", 12, _cancellable, "cancelled", _cancel_now),
)


# ------------------------------------------------------------------------------------ processes


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class Process:
    """One `mirror-neuron serve` or `worker` process with its log file."""

    def __init__(self, name: str, command: str, env: dict[str, str], workdir: Path) -> None:
        self.name = name
        self.log_path = workdir / f"{name}.log"
        with open(self.log_path, "ab") as log:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "app", command],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self) -> int:
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return int(self.popen.returncode or 0)

    def tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""


def _proxy_for(url: str, seed: int) -> FaultProxy:
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    return FaultProxy(parsed.host or "127.0.0.1", parsed.port or 5432, seed=seed).start()


def _through(url: str, proxy: FaultProxy) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)


async def _admin(dsn: str, statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def _database_url(dsn: str, name: str) -> str:
    return dsn.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1) + f"/{name}"


# ------------------------------------------------------------------------------------ the run


@dataclass
class Options:
    """What to run."""

    jobs: int = 5000
    workers: int = 2
    concurrency: int = 24
    seed: int = 1
    rss_window: int = 1000
    pg_dsn: str = field(default_factory=lambda: os.environ.get("MIRROR_NEURON_TEST_PG_DSN", DEFAULT_PG_DSN))
    keep_database: bool = False
    workdir: Path | None = None
    lost_acks: float = 0.0
    partition_every: int = 0
    partition_seconds: float = 15.0

    @property
    def faults(self) -> bool:
        return bool(self.lost_acks or self.partition_every)


@dataclass
class Result:
    """What happened, and every criterion that failed."""

    jobs: int = 0
    acknowledged: int = 0
    seconds: float = 0.0
    outcomes: Counter[str] = field(default_factory=Counter)
    scenarios: Counter[str] = field(default_factory=Counter)
    lost: list[str] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)
    duplicate_terminals: list[str] = field(default_factory=list)
    replay_mismatches: list[str] = field(default_factory=list)
    unexpected_outcomes: list[str] = field(default_factory=list)
    driver_errors: list[str] = field(default_factory=list)
    verify_output: str = ""
    recoveries: int = 0
    retries: int = 0
    rss: dict[str, tuple[float, float]] = field(default_factory=dict)
    duplicate_effects: list[str] = field(default_factory=list)
    acks_lost: int = 0
    partitions: int = 0
    restarts: int = 0
    problems: list[str] = field(default_factory=list)
    workdir: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems


class RssSampler(threading.Thread):
    """Every second: how many jobs have ended, and each worker's RSS."""

    def __init__(self, workers: list[Process], finished: Callable[[], int]) -> None:
        super().__init__(daemon=True)
        self.workers = workers
        self.finished = finished
        self.samples: list[tuple[int, dict[str, int]]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(1.0):
            with contextlib.suppress(OSError):
                self.samples.append((self.finished(), {w.name: _rss(w.pid) for w in self.workers}))

    def windows(self, total: int, window: int) -> dict[str, tuple[float, float]]:
        """Median RSS per worker while the first `window` jobs ended, and while the last did."""
        first = [s for done, s in self.samples if done <= window]
        last = [s for done, s in self.samples if done > total - window]
        return {
            w.name: (
                statistics.median(s[w.name] for s in first) if first else float("nan"),
                statistics.median(s[w.name] for s in last) if last else float("nan"),
            )
            for w in self.workers
        }


class Soak:
    """One soak run: processes up, jobs through, checks, processes down."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self.workdir = options.workdir or Path(tempfile.mkdtemp(prefix="mn_soak_"))
        self.result = Result(jobs=options.jobs, workdir=str(self.workdir))
        self.submitted: list[tuple[str, Scenario]] = []
        self.finished = 0
        self.run_id = uuid.uuid4().hex[:8]
        self._lock = threading.Lock()
        self.sampler: RssSampler | None = None
        self.api: Api | None = None
        self.proxies: list[FaultProxy] = []
        self.workers: list[Process] = []
        self.worker_envs: list[dict[str, str]] = []

    # ---- processes

    def _env(self, url: str, name: str, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MIRROR_NEURON_")}
        env.update(
            MIRROR_NEURON_DATABASE_URL=url,
            MIRROR_NEURON_NODE_NAME=name,
            MIRROR_NEURON_BUNDLES_DIR=str(EXAMPLES),
            MIRROR_NEURON_POLL_INTERVAL_MS="100",
            MIRROR_NEURON_TEMP_DIR=str(self.workdir / "staging"),
            MIRROR_NEURON_LOG_LEVEL="WARNING",
            **extra,
        )
        return env

    def _start(self, url: str) -> tuple[Api, Process, list[Process]]:
        port = _free_port()
        server = Process(
            "soak-api",
            "serve",
            self._env(url, "soak-api", MIRROR_NEURON_RUNTIME_ENABLED="0", MIRROR_NEURON_API_PORT=str(port)),
            self.workdir,
        )
        api = Api(f"http://127.0.0.1:{port}")
        _until(lambda: self._ready(api, server), 60)
        for i in range(1, self.options.workers + 1):
            worker_url = url
            if self.options.faults:
                proxy = _proxy_for(url, seed=self.options.seed + i)
                self.proxies.append(proxy)
                worker_url = _through(url, proxy)
            self.worker_envs.append(self._env(worker_url, f"soak-worker-{i}"))
        workers = [
            Process(f"soak-worker-{i}", "worker", env, self.workdir) for i, env in enumerate(self.worker_envs, 1)
        ]
        _until(lambda: len(self._alive_workers(api)) == len(workers), 60)
        for proxy in self.proxies:
            proxy.lose_commit_acks(self.options.lost_acks)
        return api, server, workers

    @staticmethod
    def _ready(api: Api, server: Process) -> bool:
        if not server.alive():
            raise RuntimeError(f"the API server exited:\n{server.tail()}")
        try:
            return api.call("GET", "/api/v1/health/ready")[0] == 200
        except OSError:
            return False

    @staticmethod
    def _alive_workers(api: Api) -> list[str]:
        nodes = api.call("GET", "/api/v1/nodes")[1]["data"]
        return [n["name"] for n in nodes if n["status"] == "alive" and n["runtime_enabled"]]

    # ---- jobs

    def _one(self, api: Api, index: int, scenario: Scenario) -> None:
        # The key makes a retried submission (after a 503) return the same job, never a second one.
        key = {"Idempotency-Key": f"soak-{self.run_id}-{index}"}
        status, answer = api.call("POST", "/api/v1/jobs", scenario.body(), headers=key)
        if status not in (200, 201):
            self.result.driver_errors.append(f"{scenario.name}: submit answered {status} {answer}")
            return
        job_id = answer["job_id"]
        with self._lock:
            self.submitted.append((job_id, scenario))
        try:
            scenario.drive(api, job_id)
        except TimeoutError:
            self.result.stuck.append(job_id)
        except Exception as exc:  # a failed step of the driver; the checks below still cover the job
            self.result.driver_errors.append(f"{scenario.name} {job_id}: {type(exc).__name__}: {exc}")
        with self._lock:
            self.finished += 1
            every = self.options.partition_every
            if every and self.finished % every == 0 and self.finished < self.options.jobs:
                turn = self.finished // every - 1
                threading.Thread(target=self._partition, args=(turn % len(self.proxies),), daemon=True).start()
            if self.finished % 250 == 0:
                rss = self.sampler.samples[-1][1] if self.sampler and self.sampler.samples else {}
                figures = ", ".join(f"{name} {value / 2**20:.1f} MiB" for name, value in rss.items())
                print(f"  {self.finished} jobs ended; RSS {figures}", file=sys.stderr, flush=True)

    def _drive_all(self, api: Api) -> None:
        rng = random.Random(self.options.seed)
        weights = [s.weight for s in SCENARIOS]
        chosen = rng.choices(SCENARIOS, weights=weights, k=self.options.jobs)
        with ThreadPoolExecutor(self.options.concurrency) as pool:
            for future in [pool.submit(self._one, api, i, scenario) for i, scenario in enumerate(chosen)]:
                future.result()

    def _partition(self, index: int) -> None:
        """Cut worker `index` off for longer than its lease TTL, heal, and restart it once it has fenced itself out."""
        proxy, worker = self.proxies[index], self.workers[index]
        print(f"  partition of {worker.name} for {self.options.partition_seconds} s", file=sys.stderr, flush=True)
        self.result.partitions += 1
        proxy.partition()
        time.sleep(self.options.partition_seconds)
        proxy.heal()
        try:
            worker.popen.wait(timeout=90)  # declared lost while cut off: it exits
        except subprocess.TimeoutExpired:
            return  # it kept its place (no other node declared it lost): nothing to restart
        self.result.restarts += 1
        self.workers[index] = Process(worker.name, "worker", self.worker_envs[index], self.workdir)

    # ---- checks

    def _check_job(self, api: Api, job_id: str, scenario: Scenario) -> None:
        status, details = api.call("GET", f"/api/v1/jobs/{job_id}")
        if status != 200:
            self.result.lost.append(job_id)
            return
        recorded = api.events(job_id)
        job = details["job"]
        self.result.outcomes[job["status"]] += 1
        self.result.scenarios[scenario.name] += 1
        self.result.recoveries += job["recovery_count"]
        terminal = [e for e in recorded if e["type"] in TERMINAL_EVENTS]
        if len(terminal) > 1 or (terminal and terminal[-1] is not recorded[-1]):
            self.result.duplicate_terminals.append(job_id)
        if job["status"] not in TERMINAL and job_id not in self.result.stuck:
            self.result.stuck.append(job_id)
        if job["status"] != scenario.expected:
            self.result.unexpected_outcomes.append(
                f"{scenario.name} {job_id}: {job['status']} {job['result']}"
            )
        differences = compare_with_api(recorded, details)
        if differences:
            self.result.replay_mismatches.append(f"{job_id}: {differences[:3]}")
        self.result.duplicate_effects += [f"{job_id}: {d}" for d in duplicate_effects(recorded)]

    def _verify(self, url: str) -> None:
        env = self._env(url, "soak-verify")
        done = subprocess.run(
            [sys.executable, "-m", "app", "verify"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        self.result.verify_output = (done.stdout + done.stderr).strip()
        if done.returncode != 0:
            self.result.problems.append(f"mirror-neuron verify failed: {self.result.verify_output[-2000:]}")

    def _judge(self, sampler: RssSampler, workers: list[Process]) -> None:
        r, window = self.result, self.options.rss_window
        r.acknowledged = len(self.submitted)
        r.retries = self.api.retries if self.api is not None else 0
        for label, found in (
            ("lost jobs", r.lost),
            ("jobs not terminal", r.stuck),
            ("jobs with a duplicate or misplaced terminal event", r.duplicate_terminals),
            ("jobs whose replay differs from the API", r.replay_mismatches),
            ("effects recorded twice", r.duplicate_effects),
            ("jobs with an unexpected outcome", r.unexpected_outcomes),
            ("driver errors", r.driver_errors),
        ):
            if found:
                r.problems.append(f"{len(found)} {label}: {found[:5]}")
        if r.acknowledged != self.options.jobs:
            r.problems.append(f"{self.options.jobs - r.acknowledged} submissions were not acknowledged")
        for worker in workers:
            if not worker.alive():
                r.problems.append(f"{worker.name} exited:\n{worker.tail()}")
        r.acks_lost = sum(p.counters.acks_lost for p in self.proxies)
        r.rss = sampler.windows(r.acknowledged, window)
        if r.acknowledged >= 2 * window and not self.options.faults:
            for name, (first, last) in r.rss.items():
                if not last <= first * (1 + RSS_GROWTH_LIMIT):
                    r.problems.append(
                        f"{name} RSS grew {last / first - 1:.1%} (first {window} jobs → last {window})"
                    )

    # ---- the whole run

    def run(self) -> Result:
        name = f"mn_soak_{uuid.uuid4().hex[:10]}"
        dsn = self.options.pg_dsn
        asyncio.run(_admin(dsn, f'CREATE DATABASE "{name}"'))
        url = _database_url(dsn, name)
        processes: list[Process] = []
        try:
            subprocess.run(
                [sys.executable, "-m", "app", "migrate"],
                cwd=ROOT,
                env=self._env(url, "soak-migrate"),
                check=True,
                capture_output=True,
                timeout=300,
            )
            api, server, workers = self._start(url)
            self.api = api
            self.workers = workers  # replaced in place when a partitioned worker is restarted
            processes = [server]
            sampler = self.sampler = RssSampler(workers, lambda: self.finished)
            sampler.start()
            started = time.monotonic()
            self._drive_all(api)
            self.result.seconds = time.monotonic() - started
            sampler.stop.set()
            sampler.join()
            for job_id, scenario in self.submitted:
                self._check_job(api, job_id, scenario)
            self._judge(sampler, workers)
        finally:
            for process in reversed([*processes, *self.workers]):
                process.stop()
            for proxy in self.proxies:
                proxy.stop()
            if processes:
                self._verify(url)
            if not self.options.keep_database:
                asyncio.run(_admin(dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        return self.result


def run(options: Options) -> Result:
    """Run one soak and return its result (the processes are stopped and the database dropped)."""
    return Soak(options).run()


def summary(result: Result, options: Options) -> str:
    """The figures of a run, one per line."""
    lines = [
        f"soak: {result.jobs} jobs, {options.workers} workers + 1 API-only server, Postgres, concurrency {options.concurrency}",
        f"  duration            {result.seconds:.1f} s ({result.acknowledged / max(result.seconds, 1e-9):.1f} jobs/s)",
        f"  acknowledged        {result.acknowledged}",
        f"  outcomes            {dict(sorted(result.outcomes.items()))}",
        f"  scenarios           {dict(sorted(result.scenarios.items()))}",
        f"  lost                {len(result.lost)}",
        f"  not terminal        {len(result.stuck)}",
        f"  duplicate terminals {len(result.duplicate_terminals)}",
        f"  replay mismatches   {len(result.replay_mismatches)}",
        f"  unexpected outcomes {len(result.unexpected_outcomes)}",
        f"  recoveries          {result.recoveries}",
        f"  effects twice       {len(result.duplicate_effects)}",
        f"  client retries      {result.retries} (answers 503 or refused connections)",
        f"  verify              {result.verify_output.splitlines()[-1] if result.verify_output else 'not run'}",
    ]
    for name, (first, last) in sorted(result.rss.items()):
        growth = (last / first - 1) if first == first and first else float("nan")
        lines.append(
            f"  RSS {name:<15} first {options.rss_window} jobs {first / 2**20:.1f} MiB, "
            f"last {options.rss_window} {last / 2**20:.1f} MiB ({growth:+.1%})"
        )
    if options.faults:
        lines.append(
            f"  faults              {result.acks_lost} COMMIT replies lost ({options.lost_acks:.0%} asked), "
            f"{result.partitions} partitions of {options.partition_seconds:g} s, {result.restarts} workers restarted "
            "(RSS criterion not applied)"
        )
    lines.append(f"  logs                {result.workdir}")
    lines.append("PASS" if result.ok else "FAIL:\n  - " + "\n  - ".join(result.problems))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=24, help="jobs in flight at once")
    parser.add_argument("--seed", type=int, default=1, help="seed of the scenario mix")
    parser.add_argument("--rss-window", type=int, default=1000, help="jobs in the first and last RSS windows")
    parser.add_argument("--pg-dsn", default=os.environ.get("MIRROR_NEURON_TEST_PG_DSN", DEFAULT_PG_DSN))
    parser.add_argument("--keep-database", action="store_true")
    parser.add_argument("--lost-acks", type=float, default=0.0, help="fraction of COMMIT replies the workers lose")
    parser.add_argument("--partition-every", type=int, default=0, help="cut one worker off after every N jobs")
    parser.add_argument("--partition-seconds", type=float, default=15.0, help="how long (over the 10 s lease TTL)")
    args = parser.parse_args(argv)
    options = Options(
        jobs=args.jobs,
        workers=args.workers,
        concurrency=args.concurrency,
        seed=args.seed,
        rss_window=args.rss_window,
        pg_dsn=args.pg_dsn,
        keep_database=args.keep_database,
        lost_acks=args.lost_acks,
        partition_every=args.partition_every,
        partition_seconds=args.partition_seconds,
    )
    result = run(options)
    print(summary(result, options))
    return 0 if result.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
