"""Shared machinery: statistics, result tables, scratch databases, server processes, wrk, RSS."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import shutil
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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = Path(__file__).resolve().parent
LUA_DIR = BENCH_DIR / "lua"
PYTHON = sys.executable
# Where the application under test lives: this checkout, or (`--compare REF`) a worktree of another
# commit. Its processes (serve, worker, migrate, rebuild) run from there; the bench, the floor and the
# peers always run from this checkout, so both sides are measured by the same harness.
APP_ROOT = Path(os.environ.get("BENCH_APP_ROOT") or ROOT).resolve()
DEFAULT_PG_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


# ------------------------------------------------------------------------------------ config


@dataclass
class Config:
    """What the command line asked for."""

    quick: bool
    runs: int
    backends: tuple[str, ...]
    pg_dsn: str
    profile_dir: Path | None = None
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="mn_bench_")))

    def size(self, quick: Any, full: Any) -> Any:
        """`quick` in --quick mode, else `full`."""
        return quick if self.quick else full


def log(message: str) -> None:
    """Progress on stderr (the tables go to stdout)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------ statistics


@dataclass(frozen=True)
class Sample:
    """Several runs of one measurement."""

    values: tuple[float, ...]

    @classmethod
    def of(cls, values: Sequence[float]) -> Sample:
        return cls(tuple(float(v) for v in values))

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    @property
    def spread(self) -> float:
        """(max − min) / median: how far apart the runs were."""
        if len(self.values) < 2 or not self.median:
            return 0.0
        return (max(self.values) - min(self.values)) / abs(self.median)


def fmt(value: float, unit: str = "") -> str:
    """A figure with a sensible number of digits."""
    if value != value:  # NaN
        return "n/a"
    if abs(value) >= 100:
        text = f"{value:,.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    return f"{text} {unit}".rstrip()


@dataclass
class Row:
    """One line of a result table: our figure, the peer's, the ratio and the target."""

    what: str
    backend: str
    ours: Sample
    unit: str
    peer_name: str = ""
    peer: Sample | None = None
    ratio: float | None = None
    target: str = ""
    met: bool | None = None


@dataclass
class Table:
    """One benchmark's results."""

    title: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        return row

    def render(self) -> str:
        header = ["measurement", "db", "ours (median)", "spread", "peer / limit", "peer (median)", "spread", "ratio", "target"]
        lines = []
        for r in self.rows:
            lines.append(
                [
                    r.what,
                    r.backend,
                    fmt(r.ours.median, r.unit),
                    f"±{r.ours.spread * 50:.0f}%",
                    r.peer_name or "—",
                    fmt(r.peer.median, r.unit) if r.peer is not None else "—",
                    f"±{r.peer.spread * 50:.0f}%" if r.peer is not None else "—",
                    f"{r.ratio:.2f}×" if r.ratio is not None else "—",
                    (r.target + (" ✓" if r.met else " ✗" if r.met is not None else "")) if r.target else "—",
                ]
            )
        out = [f"### {self.title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        out += ["| " + " | ".join(cells) + " |" for cells in lines]
        out += [""] + [f"- {n}" for n in self.notes]
        return "\n".join(out) + "\n"

    def to_json(self) -> dict[str, Any]:
        """Every run's figures (for `--json` and `--compare`)."""
        return {
            "title": self.title,
            "rows": [
                {
                    "what": r.what, "backend": r.backend, "unit": r.unit, "ours": list(r.ours.values),
                    "peer_name": r.peer_name, "peer": list(r.peer.values) if r.peer is not None else None,
                    "target": r.target,
                }
                for r in self.rows
            ],
        }


def cpu_row(
    what: str, backend: str, ours: Sequence[float], peer_name: str = "", peer: Sequence[float] | None = None,
    *, at_most: float | None = None,
) -> Row:
    """A row of CPU milliseconds per operation (one value per run), with its ratio to a peer's and
    the target `ratio ≤ at_most` when given."""
    mine = Sample.of(ours)
    other = Sample.of(peer) if peer else None
    ratio = mine.median / other.median if other is not None and other.median else None
    target = f"≤ {at_most:g}×" if at_most is not None else ""
    met = (ratio <= at_most) if at_most is not None and ratio is not None else None
    return Row(what, backend, mine, "ms CPU/op", peer_name, other, ratio, target, met)


def per_op_ms(seconds: float, operations: int) -> float:
    """CPU seconds spent on `operations` → milliseconds per operation."""
    return seconds * 1000 / operations if operations else float("nan")


def machine() -> str:
    """A one-line description of the machine this run measured."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1024**3)
    pg = ""
    with contextlib.suppress(Exception):
        pg = subprocess.run(
            ["psql", "-At", "-h", "127.0.0.1", "-U", "postgres", "-c", "show server_version"],
            capture_output=True, text=True, timeout=5,
        ).stdout.strip()
    return (
        f"{os.cpu_count()} cores ({cpu}), {mem} GiB RAM, Linux {platform.release()}, Python {platform.python_version()}"
        + (f", PostgreSQL {pg.split()[0]}" if pg else "")
        + f", SQLite {__import__('sqlite3').sqlite_version}"
    )


def today() -> str:
    return dt.datetime.now().strftime("%Y-%m-%d %H:%M")


def load_average() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.1f}/{five:.1f}"


# ------------------------------------------------------------------------------------ databases


def _pg_parts(dsn: str) -> tuple[str, str]:
    """The DSN without its database name, and the database name."""
    base, _, name = dsn.rpartition("/")
    return base, name.split("?")[0]


class Databases:
    """Scratch databases of one run: created on demand, dropped at the end."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.pg: list[str] = []
        self.files: list[Path] = []

    def pg_dsn(self, name: str) -> str:
        return f"{_pg_parts(self.cfg.pg_dsn)[0]}/{name}"

    async def create_pg(self, label: str) -> str:
        """A fresh Postgres database; returns its libpq DSN."""
        import asyncpg

        name = f"mn_bench_{label}_{uuid.uuid4().hex[:8]}"
        conn = await asyncpg.connect(self.cfg.pg_dsn)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        self.pg.append(name)
        return self.pg_dsn(name)

    async def drop_pg(self, dsn: str) -> None:
        import asyncpg

        name = _pg_parts(dsn)[1]
        conn = await asyncpg.connect(self.cfg.pg_dsn)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()
        if name in self.pg:
            self.pg.remove(name)

    def sqlite_file(self, label: str) -> Path:
        path = self.cfg.workdir / f"{label}_{uuid.uuid4().hex[:8]}.db"
        self.files.append(path)
        return path

    async def drop_all(self) -> None:
        for name in list(self.pg):
            with contextlib.suppress(Exception):
                await self.drop_pg(self.pg_dsn(name))
        for path in self.files:
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(OSError):
                    Path(str(path) + suffix).unlink()


def app_url(backend: str, target: str | Path) -> str:
    """The MIRROR_NEURON_DATABASE_URL of a scratch database."""
    if backend == "postgres":
        return str(target).replace("postgresql://", "postgresql+asyncpg://", 1)
    return f"sqlite+aiosqlite:///{target}"


def app_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a process of the application under test (APP_ROOT first on the path)."""
    base = dict(os.environ if env is None else env)
    if APP_ROOT != ROOT:
        base["PYTHONPATH"] = os.pathsep.join(p for p in (str(APP_ROOT), base.get("PYTHONPATH", "")) if p)
    return base


async def migrate(url: str) -> None:
    """Bring a scratch database to the newest migration, as `mirror-neuron migrate` does."""
    if APP_ROOT != ROOT:  # the other commit's migrations, by its own command
        proc = await asyncio.create_subprocess_exec(
            PYTHON, "-m", "app", "migrate", cwd=APP_ROOT,
            env=app_env({**os.environ, "MIRROR_NEURON_DATABASE_URL": url, "MIRROR_NEURON_LOG_LEVEL": "WARNING"}),
        )
        if await proc.wait() != 0:
            raise RuntimeError(f"mirror-neuron migrate failed at {APP_ROOT}")
        return
    from app.store.database import Database
    from app.store.migrate import upgrade_to_head

    db = Database(url)
    try:
        await upgrade_to_head(db.writer)
    finally:
        await db.dispose()


# ------------------------------------------------------------------------------------ processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RssSampler:
    """The peak resident set size of one process (its children not included).

    Reads the kernel's high-water mark (VmHWM in /proc/PID/status) every 50 ms; `reset` clears
    it (`5` to /proc/PID/clear_refs) so that one run's peak can be told from the next. The
    rusage of wait4 is no use here: after fork, the child's maximum RSS counts the parent's pages.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _hwm(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        return 0

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self._hwm())
            except (OSError, ValueError):
                return
            self._stop.wait(0.05)

    def start(self) -> RssSampler:
        self._thread.start()
        return self

    def reset(self) -> None:
        with contextlib.suppress(OSError):
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
        self.peak = 0

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(timeout=2)
        return self.peak


class Profiler:
    """`py-spy record` attached to a process, when --profile DIR is given.

    Writes collapsed stacks (`<name>.folded`, one `frame;frame;... count` line per stack): text that
    `python -m bench.profile` summarises and any flame graph tool (py-spy's, inferno, speedscope) draws.
    """

    def __init__(self, cfg: Config, pid: int, name: str) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        if cfg.profile_dir is None:
            return
        exe = shutil.which("py-spy") or str(Path(PYTHON).with_name("py-spy"))
        cfg.profile_dir.mkdir(parents=True, exist_ok=True)
        out = cfg.profile_dir / f"{name}.folded"
        self.proc = subprocess.Popen(
            [exe, "record", "--pid", str(pid), "--rate", "250", "--nonblocking", "--format", "raw", "-o", str(out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        log(f"profiling pid {pid} into {out}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=30)


def wait_ready(proc: subprocess.Popen[bytes], url: str, log_path: Path, timeout: float = 60) -> None:
    """Wait until `url` answers 200; raise (pointing at the process's log) if it exits or never does."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}; see {log_path}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{proc.args} did not answer {url}; see {log_path}")
        time.sleep(0.1)


def terminate(proc: subprocess.Popen[Any]) -> None:
    """SIGTERM, then SIGKILL after 30 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _own_metrics_port(env: dict[str, str]) -> None:
    """With MIRROR_NEURON_METRICS_PORT set (`--b-env MIRROR_NEURON_METRICS_PORT=1`: metrics on), give
    every process a free port of its own, as a deployment does."""
    if env.get("MIRROR_NEURON_METRICS_PORT"):
        env["MIRROR_NEURON_METRICS_PORT"] = str(free_port())


class Server:
    """A real `mirror-neuron serve` process on a free port."""

    def __init__(self, cfg: Config, url: str, name: str, **env: str) -> None:
        self.cfg = cfg
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.name = name
        self.env = {
            **os.environ,
            "MIRROR_NEURON_DATABASE_URL": url,
            "MIRROR_NEURON_API_PORT": str(self.port),
            "MIRROR_NEURON_NODE_NAME": f"bench-{name}",
            "MIRROR_NEURON_LOG_LEVEL": "WARNING",
            "MIRROR_NEURON_TEMP_DIR": str(cfg.workdir / "staging"),
            **env,
        }
        _own_metrics_port(self.env)
        self.proc: subprocess.Popen[bytes] | None = None
        self.rss: RssSampler | None = None
        self.profiler: Profiler | None = None
        self._log = cfg.workdir / f"server_{name}_{self.port}.log"

    def __enter__(self) -> Server:
        out = self._log.open("wb")
        self.proc = subprocess.Popen(
            [PYTHON, "-m", "app", "serve"], cwd=APP_ROOT, env=app_env(self.env), stdout=out, stderr=subprocess.STDOUT
        )
        wait_ready(self.proc, self.base + "/api/v1/health/ready", self._log)
        self.rss = RssSampler(self.proc.pid).start()
        self.profiler = Profiler(self.cfg, self.proc.pid, self.name)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.profiler is not None:
            self.profiler.stop()
        if self.rss is not None:
            self.rss.stop()
        if self.proc is not None:
            terminate(self.proc)

    def get_json(self, path: str) -> Any:
        with urllib.request.urlopen(self.base + path, timeout=60) as r:
            return json.loads(r.read())

    def post_json(self, path: str, body: Any) -> Any:
        request = urllib.request.Request(
            self.base + path, data=json.dumps(body).encode(), method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as r:
            return json.loads(r.read())


class Worker:
    """A real `mirror-neuron worker` process (runtime only, no HTTP) on a server's database."""

    def __init__(self, server: Server, name: str, **env: str) -> None:
        self.cfg = server.cfg
        self.name = name
        self.env = {**server.env, "MIRROR_NEURON_NODE_NAME": f"bench-{name}", **env}
        self.env.pop("MIRROR_NEURON_API_PORT", None)
        self.env.pop("MIRROR_NEURON_RUNTIME_ENABLED", None)
        _own_metrics_port(self.env)
        self.proc: subprocess.Popen[bytes] | None = None
        self.profiler: Profiler | None = None
        self._log = server.cfg.workdir / f"worker_{name}.log"

    def __enter__(self) -> Worker:
        out = self._log.open("wb")
        self.proc = subprocess.Popen(
            [PYTHON, "-m", "app", "worker"], cwd=APP_ROOT, env=app_env(self.env), stdout=out, stderr=subprocess.STDOUT
        )
        self.profiler = Profiler(self.cfg, self.proc.pid, self.name)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.profiler is not None:
            self.profiler.stop()
        if self.proc is not None:
            terminate(self.proc)

    def check(self) -> None:
        """Raise if the worker has exited."""
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"worker exited with {self.proc.returncode}; see {self._log}")


def run_child(argv: Sequence[str], env: dict[str, str] | None = None, cwd: Path = ROOT) -> tuple[float, int, str]:
    """Run a process to its end; return (wall seconds, peak RSS in bytes, stdout)."""
    started = time.perf_counter()
    proc = subprocess.Popen(list(argv), cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    sampler = RssSampler(proc.pid).start()
    out, _ = proc.communicate()
    elapsed = time.perf_counter() - started
    peak = sampler.stop()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited with {proc.returncode}:\n{out.decode(errors='replace')}")
    return elapsed, peak, out.decode(errors="replace")


# ------------------------------------------------------------------------------------ wrk


@dataclass(frozen=True)
class WrkResult:
    """What one wrk run measured (from the `done` hook of bench/lua/report.lua)."""

    requests: int
    seconds: float
    errors: int
    non2xx: int
    p50_ms: float
    p99_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def wrk(
    url: str,
    *,
    script: str,
    connections: int,
    seconds: float,
    threads: int = 2,
    env: dict[str, str] | None = None,
    timeout_s: int = 10,
    proc_hook: Callable[[subprocess.Popen[str]], None] | None = None,
) -> WrkResult:
    """Run wrk with a Lua script from bench/lua; the script's `done` prints one JSON line."""
    exe = shutil.which("wrk")
    if exe is None:
        raise RuntimeError("wrk is not installed: apt-get install -y wrk")
    argv = [
        exe, "-t", str(min(threads, connections)), "-c", str(connections), "-d", f"{seconds}s",
        "--timeout", f"{timeout_s}s", "-s", str(LUA_DIR / script), url,
    ]
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "BENCH_LUA_DIR": str(LUA_DIR), **(env or {})}
    )
    if proc_hook is not None:
        proc_hook(proc)
    out, _ = proc.communicate()
    for line in out.splitlines():
        if line.startswith("BENCH_JSON "):
            data = json.loads(line[len("BENCH_JSON "):])
            return WrkResult(
                requests=int(data["requests"]), seconds=data["duration_us"] / 1e6,
                errors=int(data["errors"]), non2xx=int(data["non2xx"]),
                p50_ms=data["p50_us"] / 1000, p99_ms=data["p99_us"] / 1000,
            )
    raise RuntimeError(f"wrk produced no result:\n{out}")


# ------------------------------------------------------------------------------------ misc


def retried(what: str, work: Callable[[], Any], attempts: int = 3) -> Any:
    """Run `work`, retrying after a pause when it fails (the shared Postgres restarts under
    other engineers' fault tests, and its 100 connections are shared); re-raise the last error."""
    for attempt in range(1, attempts + 1):
        try:
            return work()
        except Exception as exc:
            detail = getattr(exc, "stderr", None) or exc
            log(f"  {what} failed (attempt {attempt}/{attempts}): {str(detail).strip()[-300:]}")
            if attempt == attempts:
                raise
            time.sleep(5 * attempt)
    raise AssertionError("unreachable")


def run_async(coro: Any) -> Any:
    return asyncio.run(coro)


@contextlib.contextmanager
def timer() -> Iterator[Callable[[], float]]:
    started = time.perf_counter()
    yield lambda: time.perf_counter() - started


def trivial_manifest(graph_id: str = "bench_trivial") -> dict[str, Any]:
    """The trivial job: a router forwarding one seed message to an aggregator that completes the job."""
    return {
        "manifest_version": "1.0",
        "graph_id": graph_id,
        "entrypoints": ["router"],
        "initial_inputs": {"router": [{"n": 1}]},
        "nodes": [
            {"node_id": "router", "agent_type": "router", "config": {"emit_type": "work"}},
            {"node_id": "sink", "agent_type": "aggregator", "config": {"complete_after": 1}},
        ],
        "edges": [{"from_node": "router", "to_node": "sink", "message_type": "work"}],
    }
