"""CPU time per operation: what each process of a measurement (and the Postgres backends that serve it)
spent on the CPU between two snapshots.

On a shared 2-core machine throughput moves ±30 % from one hour to the next for the same code; the CPU
seconds a process spends on a given number of operations moves far less, so every benchmark reports
it next to its rates: `CPU ms per operation = Δ(process CPU seconds) × 1000 / operations`.

* A process's CPU is `utime + stime` of /proc/PID/stat (all its threads, dead ones included), for the
  process and its descendants (an API server with extra API processes, a server's children).
* A Postgres backend serves exactly one client connection: the backends of a process are those whose
  TCP connection's remote port is the local port of one of the process's connections to Postgres
  (psutil lists both ends as root). A backend is single-threaded; its CPU is read from
  /proc/PID/schedstat in nanoseconds (the clock-tick figures of /proc/PID/stat would be ±10 ms per
  backend, and a pool holds twenty of them).
* A backend that connects during the window counts from zero (its start-up is part of the cost);
  one that disconnects during the window is lost — pools keep theirs, so measure steady states.

Peers run as short-lived processes measure themselves: `SelfMeter` around their timed loop.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

PG_PORT = int(os.environ.get("BENCH_PG_PORT", "5432"))
_TICK = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) of one process, all threads; 0 if it is gone."""
    try:
        text = open(f"/proc/{pid}/stat").read()  # noqa: SIM115 - tiny read
    except OSError:
        return 0.0
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def backend_cpu(pid: int) -> float:
    """CPU seconds of a (single-threaded) Postgres backend, nanosecond resolution; 0 if gone."""
    try:
        return int(open(f"/proc/{pid}/schedstat").read().split()[0]) / 1e9  # noqa: SIM115
    except (OSError, ValueError, IndexError):
        return 0.0


def family(pid: int) -> list[int]:
    """The process and all its descendants."""
    import psutil

    try:
        proc = psutil.Process(pid)
        return [pid] + [c.pid for c in proc.children(recursive=True)]
    except psutil.Error:
        return []


def backends_of(pids: Iterable[int]) -> list[int]:
    """Pids of the Postgres backends serving the TCP connections of these client processes."""
    import psutil

    wanted = set(pids)
    conns = psutil.net_connections(kind="tcp")
    ports = {c.laddr.port for c in conns if c.pid in wanted and c.raddr and c.raddr.port == PG_PORT}
    return sorted({c.pid for c in conns if c.pid and c.laddr.port == PG_PORT and c.raddr and c.raddr.port in ports})


@dataclass
class Snapshot:
    procs: dict[int, float]
    backends: dict[int, float]


class CpuMeter:
    """CPU of named groups of processes (each with its Postgres backends) between `start` and `stop`.

    `groups` maps a name to a pid or to a callable returning the root pids (looked up at each
    snapshot, so processes started later are found). `stop` returns `{name: s, name+":pg": s}`.
    """

    def __init__(self, groups: dict[str, int | Callable[[], Iterable[int]]], *, postgres: bool = True) -> None:
        self.groups = groups
        self.postgres = postgres
        self._start: dict[str, Snapshot] = {}

    def _roots(self, name: str) -> list[int]:
        spec = self.groups[name]
        return [spec] if isinstance(spec, int) else list(spec())

    def _snap(self) -> dict[str, Snapshot]:
        out = {}
        for name in self.groups:
            pids = [p for root in self._roots(name) for p in family(root)]
            backends = backends_of(pids) if self.postgres else []
            out[name] = Snapshot({p: process_cpu(p) for p in pids}, {b: backend_cpu(b) for b in backends})
        return out

    def start(self) -> CpuMeter:
        self._start = self._snap()
        return self

    def stop(self) -> dict[str, float]:
        end = self._snap()
        result: dict[str, float] = {}
        for name, snap in end.items():
            before = self._start.get(name, Snapshot({}, {}))
            result[name] = sum(v - before.procs.get(p, 0.0) for p, v in snap.procs.items())
            if self.postgres:
                result[name + ":pg"] = sum(v - before.backends.get(b, 0.0) for b, v in snap.backends.items())
        return result


@contextlib.contextmanager
def measured(groups: dict[str, int | Callable[[], Iterable[int]]], *, postgres: bool = True):  # type: ignore[no-untyped-def]
    """`with measured({...}) as cpu: ...` then `cpu()` is the dict of CPU seconds of the window."""
    meter = CpuMeter(groups, postgres=postgres).start()
    result: dict[str, float] = {}
    try:
        yield lambda: result
    finally:
        result.update(meter.stop())


class SelfMeter:
    """For a peer process measuring its own timed loop: its CPU (all threads, `time.process_time`)
    and that of the Postgres backends of its connections (read at `stop`, so call it while they
    are still open; backends opened during the loop count from zero)."""

    def __init__(self, postgres: bool) -> None:
        self.postgres = postgres
        self._backends = {b: backend_cpu(b) for b in backends_of([os.getpid()])} if postgres else {}
        self._cpu = time.process_time()  # after the look-up, which is not the loop's work
        self.cpu = 0.0
        self.pg = 0.0

    def stop(self) -> dict[str, float]:
        self.cpu = time.process_time() - self._cpu
        if self.postgres:
            now = {b: backend_cpu(b) for b in backends_of([os.getpid()])}
            self.pg = sum(v - self._backends.get(b, 0.0) for b, v in now.items())
        return {"cpu": self.cpu, "pg_cpu": self.pg}
