"""The Prometheus metrics of SPEC C.5.11, and the one-line calls that update them where things happen.

Every metric lives in one registry of this process (`REGISTRY`), exposed by the operations
listener. Until `enable()` is called (the listener is on) every call here returns at once, so a
node without MIRROR_NEURON_METRICS_PORT pays one boolean test per call. Label values come from
bounded sets only: catalogue event types (`custom` for the rest), route templates, pool names,
outcomes — never a job id.

With MIRROR_NEURON_API_PROCESSES > 1 only the first process has the listener, yet every process
answers requests. Then `enable(shared_dir)` puts this process's values in files of a directory the
node's processes share (prometheus-client's multiprocess mode), and `exposition()` adds up the
files of every process: counters and histograms are summed (a dead process's counts stay), gauges
are summed over the processes still alive (`livesum`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    values,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.process_collector import ProcessCollector

from app.domain import events as ev

disable_created_metrics()  # type: ignore[no-untyped-call]  # no `_created` series beside every counter and histogram
REGISTRY = CollectorRegistry(auto_describe=True)
_PROCESS = ProcessCollector(registry=REGISTRY)  # process_cpu_seconds_total, resident memory, open fds (this process)

_P = "mirror_neuron_"
_SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_ATTEMPT_SECONDS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
_BATCH = (1, 2, 5, 10, 20, 50, 100, 200)

class _Metrics:
    """This process's metric objects, registered in `registry` (None: multiprocess mode, read from files)."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        r = registry
        self.events_appended = Counter(
            _P + "events_appended", "Events this process committed, by stream kind and event type",
            ("stream", "type"), registry=r,
        )
        self.write_transactions = Counter(
            _P + "write_transactions", "Write transactions this process committed", registry=r
        )
        self.write_seconds = Histogram(
            _P + "write_seconds", "Duration of a committed write transaction, BEGIN to COMMIT", buckets=_SECONDS,
            registry=r,
        )
        self.write_batch = Histogram(
            _P + "write_batch_commands", "Commands committed together by one transaction of the write path",
            buckets=_BATCH, registry=r,
        )
        self.http_requests = Counter(
            _P + "http_requests", "API requests answered, by method, route template and status",
            ("method", "route", "status"), registry=r,
        )
        self.http_seconds = Histogram(
            _P + "http_request_seconds", "API request duration until the response is sent",
            ("method", "route"), buckets=_SECONDS, registry=r,
        )
        self.runners_active = _gauge("runners_active", "Jobs this node is running", (), r)
        self.lease_renewals = Counter(_P + "lease_renewals", "Job leases this node renewed", registry=r)
        self.leases_lost = Counter(_P + "leases_lost", "Job leases this node lost while running the job", registry=r)
        self.recoveries = Counter(
            _P + "recoveries_started", "Job recoveries this node started, by cause", ("cause",), registry=r
        )
        self.nodes_lost = Counter(_P + "nodes_lost", "Nodes this node declared lost", registry=r)
        self.pool_capacity = _gauge("executor_pool_capacity", "Slots of an executor pool", ("pool",), r)
        self.pool_in_use = _gauge("executor_pool_in_use", "Slots of an executor pool held", ("pool",), r)
        self.pool_waiting = _gauge("executor_pool_waiting", "Lease requests waiting for an executor pool", ("pool",), r)
        self.executor_attempts = Counter(
            _P + "executor_attempts", "Executor command attempts, by outcome", ("outcome",), registry=r
        )
        self.executor_seconds = Histogram(
            _P + "executor_attempt_seconds", "Duration of an executor command attempt", buckets=_ATTEMPT_SECONDS,
            registry=r,
        )
        self.db_pool_in_use = _gauge("db_pool_in_use", "Database connections checked out of the pool", (), r)
        self.followers = _gauge("followers", "Clients following a live event feed", ("feed",), r)


def _gauge(name: str, documentation: str, labels: tuple[str, ...], registry: CollectorRegistry | None) -> Gauge:
    # livesum: in multiprocess mode the node's value is the sum over its live processes (a gauge
    # only the first process sets is 0 in the others); ignored in a single process.
    return Gauge(_P + name, documentation, labels, registry=registry, multiprocess_mode="livesum")


_m = _Metrics(REGISTRY)
_shared_dir: Path | None = None

_on = False
_T = TypeVar("_T")


def enable(shared_dir: Path | None = None) -> None:
    """Start counting (the operations listener is on); in `shared_dir` with the node's other API processes.

    Call it before anything is counted: the values counted before a switch to files are not carried.
    """
    global _on, _m, _shared_dir
    if shared_dir is not None:
        _m = _values_in_files(shared_dir)
        _shared_dir = shared_dir
    _on = True


def _values_in_files(shared_dir: Path) -> _Metrics:
    # prometheus-client takes the directory from PROMETHEUS_MULTIPROC_DIR when it opens this
    # process's file of a kind (counter, histogram, gauge_livesum), at the first value of that
    # kind; _Metrics makes one of each at once. The variable is then taken away again, so that the
    # commands executors run do not inherit it (a Python command using prometheus-client would
    # write its own values into the node's directory).
    previous = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(shared_dir)
    try:
        values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]
        return _Metrics(None)
    finally:
        if previous is None:
            del os.environ["PROMETHEUS_MULTIPROC_DIR"]
        else:
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = previous


def exposition() -> bytes:
    """The Prometheus text of this process's metrics, or of every process sharing its directory."""
    if _shared_dir is None:
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(_shared_dir))  # type: ignore[no-untyped-call]
    registry.register(JOB_COUNTS)
    registry.register(_PROCESS)
    return generate_latest(registry)


def process_exited(pid: int) -> None:
    """A process sharing the directory has exited: its gauges stop counting (its counts stay)."""
    if _shared_dir is not None:
        mark_process_dead(pid, str(_shared_dir))  # type: ignore[no-untyped-call]


def enabled() -> bool:
    """Whether the calls of this module record anything."""
    return _on


class _JobCounts:
    """`mirror_neuron_jobs{status}` and `mirror_neuron_jobs_queued`, read from the projection at scrape time."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def collect(self) -> Iterator[GaugeMetricFamily]:
        jobs = GaugeMetricFamily(_P + "jobs", "Jobs by status (every node reports the same)", labels=["status"])
        for status in ev.ALL_STATUSES:
            jobs.add_metric([status], self.counts.get(status, 0))
        yield jobs
        yield GaugeMetricFamily(_P + "jobs_queued", "Jobs waiting for a node", value=self.counts.get("queued", 0))

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return self.collect()


JOB_COUNTS = _JobCounts()
REGISTRY.register(JOB_COUNTS)


def set_job_counts(counts: Mapping[str, int]) -> None:
    """Set the jobs-by-status gauge (the listener reads the projection before a scrape)."""
    JOB_COUNTS.counts = dict(counts)


# ------------------------------------------------------------------ the write path


def _stream_kind(stream_id: str) -> str:
    if stream_id == ev.SYSTEM_STREAM:
        return "system"
    return "bundle" if stream_id.startswith("bundle:") else "job"


def events_committed(stream_id: str, events: Iterable[Any]) -> None:
    """Count committed events by stream kind and catalogue type (`custom` for agent-defined types)."""
    if not _on:
        return
    kind = _stream_kind(stream_id)
    for event in events:
        kind_type = event.type if event.type in ev.RESERVED_TYPES else "custom"
        _m.events_appended.labels(kind, kind_type).inc()


def transaction_committed(seconds: float) -> None:
    """One write transaction committed after `seconds`."""
    if _on:
        _m.write_transactions.inc()
        _m.write_seconds.observe(seconds)


def batch_committed(commands: int) -> None:
    """The write path committed `commands` commands in one transaction."""
    if _on:
        _m.write_batch.observe(commands)


def connection_checked_out() -> None:
    """A database connection left the pool."""
    if _on:
        _m.db_pool_in_use.inc()


def connection_checked_in() -> None:
    """A database connection went back to the pool (or was discarded)."""
    if _on:
        _m.db_pool_in_use.dec()


# ------------------------------------------------------------------ HTTP


def http_answered(method: str, route: str, status: int, seconds: float) -> None:
    """One API request answered."""
    if _on:
        _m.http_requests.labels(method, route, str(status)).inc()
        _m.http_seconds.labels(method, route).observe(seconds)


@contextmanager
def following(feed: str) -> Iterator[None]:
    """A client follows a live feed (`job` or `global`) for the duration of the block."""
    if not _on:
        yield
        return
    gauge = _m.followers.labels(feed)
    gauge.inc()
    try:
        yield
    finally:
        gauge.dec()


# ------------------------------------------------------------------ the runtime


def runners_active(count: int) -> None:
    """The node now runs `count` jobs."""
    if _on:
        _m.runners_active.set(count)


def leases_renewed(count: int) -> None:
    """The heartbeat renewed `count` job leases."""
    if _on and count:
        _m.lease_renewals.inc(count)


def lease_lost() -> None:
    """A runner found its job lease taken or expired."""
    if _on:
        _m.leases_lost.inc()


def recovery_started(cause: str) -> None:
    """This node committed a `job_recovery_started`."""
    if _on:
        _m.recoveries.labels(cause).inc()


def node_declared_lost() -> None:
    """This node committed a `node_lost`."""
    if _on:
        _m.nodes_lost.inc()


def pool_changed(pool: str, capacity: int, in_use: int, waiting: int) -> None:
    """An executor pool's slots or queue changed."""
    if _on:
        _m.pool_capacity.labels(pool).set(capacity)
        _m.pool_in_use.labels(pool).set(in_use)
        _m.pool_waiting.labels(pool).set(waiting)


async def executor_attempt(attempt: Awaitable[_T]) -> _T:
    """Await an executor attempt, counting it by outcome and timing it.

    Outcomes: `succeeded`, `failed`, `timed_out` (from the attempt's `ok` and run result) and
    `cancelled` (the job was stopped while the command ran; no event records such an attempt).
    """
    if not _on:
        return await attempt
    started = time.monotonic()
    try:
        outcome = await attempt
    except BaseException:
        _m.executor_attempts.labels("cancelled").inc()
        _m.executor_seconds.observe(time.monotonic() - started)
        raise
    _m.executor_seconds.observe(time.monotonic() - started)
    _m.executor_attempts.labels(_attempt_outcome(outcome)).inc()
    return outcome


def _attempt_outcome(outcome: Any) -> str:
    if outcome.ok:
        return "succeeded"
    return "timed_out" if outcome.run_result.get("timed_out") else "failed"
