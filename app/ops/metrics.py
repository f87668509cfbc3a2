"""The Prometheus metrics of SPEC C.5.11, and the one-line calls that update them where things happen.

Every metric lives in one registry of this process (`REGISTRY`), exposed by the operations
listener. Until `enable()` is called (the listener is on) every call here returns at once, so a
node without MIRROR_NEURON_METRICS_PORT pays one boolean test per call. Label values come from
bounded sets only: catalogue event types (`custom` for the rest), route templates, pool names,
outcomes — never a job id.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.process_collector import ProcessCollector

from app.domain import events as ev

disable_created_metrics()  # type: ignore[no-untyped-call]  # no `_created` series beside every counter and histogram
REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)  # process_cpu_seconds_total, resident memory, open fds

_P = "mirror_neuron_"
_SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_ATTEMPT_SECONDS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
_BATCH = (1, 2, 5, 10, 20, 50, 100, 200)

EVENTS_APPENDED = Counter(
    _P + "events_appended", "Events this process committed, by stream kind and event type",
    ("stream", "type"), registry=REGISTRY,
)
WRITE_TRANSACTIONS = Counter(_P + "write_transactions", "Write transactions this process committed", registry=REGISTRY)
WRITE_SECONDS = Histogram(
    _P + "write_seconds", "Duration of a committed write transaction, BEGIN to COMMIT", buckets=_SECONDS,
    registry=REGISTRY,
)
WRITE_BATCH = Histogram(
    _P + "write_batch_commands", "Commands committed together by one transaction of the write path",
    buckets=_BATCH, registry=REGISTRY,
)
HTTP_REQUESTS = Counter(
    _P + "http_requests", "API requests answered, by method, route template and status",
    ("method", "route", "status"), registry=REGISTRY,
)
HTTP_SECONDS = Histogram(
    _P + "http_request_seconds", "API request duration until the response is sent",
    ("method", "route"), buckets=_SECONDS, registry=REGISTRY,
)
RUNNERS_ACTIVE = Gauge(_P + "runners_active", "Jobs this node is running", registry=REGISTRY)
LEASE_RENEWALS = Counter(_P + "lease_renewals", "Job leases this node renewed", registry=REGISTRY)
LEASES_LOST = Counter(_P + "leases_lost", "Job leases this node lost while running the job", registry=REGISTRY)
RECOVERIES = Counter(
    _P + "recoveries_started", "Job recoveries this node started, by cause", ("cause",), registry=REGISTRY
)
NODES_LOST = Counter(_P + "nodes_lost", "Nodes this node declared lost", registry=REGISTRY)
POOL_CAPACITY = Gauge(_P + "executor_pool_capacity", "Slots of an executor pool", ("pool",), registry=REGISTRY)
POOL_IN_USE = Gauge(_P + "executor_pool_in_use", "Slots of an executor pool held", ("pool",), registry=REGISTRY)
POOL_WAITING = Gauge(
    _P + "executor_pool_waiting", "Lease requests waiting for an executor pool", ("pool",), registry=REGISTRY
)
EXECUTOR_ATTEMPTS = Counter(
    _P + "executor_attempts", "Executor command attempts, by outcome", ("outcome",), registry=REGISTRY
)
EXECUTOR_SECONDS = Histogram(
    _P + "executor_attempt_seconds", "Duration of an executor command attempt", buckets=_ATTEMPT_SECONDS,
    registry=REGISTRY,
)
DB_POOL_IN_USE = Gauge(_P + "db_pool_in_use", "Database connections checked out of the pool", registry=REGISTRY)
FOLLOWERS = Gauge(_P + "followers", "Clients following a live event feed", ("feed",), registry=REGISTRY)

_on = False
_T = TypeVar("_T")


def enable() -> None:
    """Start counting (the operations listener is on)."""
    global _on
    _on = True


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
        EVENTS_APPENDED.labels(kind, kind_type).inc()


def transaction_committed(seconds: float) -> None:
    """One write transaction committed after `seconds`."""
    if _on:
        WRITE_TRANSACTIONS.inc()
        WRITE_SECONDS.observe(seconds)


def batch_committed(commands: int) -> None:
    """The write path committed `commands` commands in one transaction."""
    if _on:
        WRITE_BATCH.observe(commands)


def connection_checked_out() -> None:
    """A database connection left the pool."""
    if _on:
        DB_POOL_IN_USE.inc()


def connection_checked_in() -> None:
    """A database connection went back to the pool (or was discarded)."""
    if _on:
        DB_POOL_IN_USE.dec()


# ------------------------------------------------------------------ HTTP


def http_answered(method: str, route: str, status: int, seconds: float) -> None:
    """One API request answered."""
    if _on:
        HTTP_REQUESTS.labels(method, route, str(status)).inc()
        HTTP_SECONDS.labels(method, route).observe(seconds)


@contextmanager
def following(feed: str) -> Iterator[None]:
    """A client follows a live feed (`job` or `global`) for the duration of the block."""
    if not _on:
        yield
        return
    gauge = FOLLOWERS.labels(feed)
    gauge.inc()
    try:
        yield
    finally:
        gauge.dec()


# ------------------------------------------------------------------ the runtime


def runners_active(count: int) -> None:
    """The node now runs `count` jobs."""
    if _on:
        RUNNERS_ACTIVE.set(count)


def leases_renewed(count: int) -> None:
    """The heartbeat renewed `count` job leases."""
    if _on and count:
        LEASE_RENEWALS.inc(count)


def lease_lost() -> None:
    """A runner found its job lease taken or expired."""
    if _on:
        LEASES_LOST.inc()


def recovery_started(cause: str) -> None:
    """This node committed a `job_recovery_started`."""
    if _on:
        RECOVERIES.labels(cause).inc()


def node_declared_lost() -> None:
    """This node committed a `node_lost`."""
    if _on:
        NODES_LOST.inc()


def pool_changed(pool: str, capacity: int, in_use: int, waiting: int) -> None:
    """An executor pool's slots or queue changed."""
    if _on:
        POOL_CAPACITY.labels(pool).set(capacity)
        POOL_IN_USE.labels(pool).set(in_use)
        POOL_WAITING.labels(pool).set(waiting)


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
        EXECUTOR_ATTEMPTS.labels("cancelled").inc()
        EXECUTOR_SECONDS.observe(time.monotonic() - started)
        raise
    EXECUTOR_SECONDS.observe(time.monotonic() - started)
    EXECUTOR_ATTEMPTS.labels(_attempt_outcome(outcome)).inc()
    return outcome


def _attempt_outcome(outcome: Any) -> str:
    if outcome.ok:
        return "succeeded"
    return "timed_out" if outcome.run_result.get("timed_out") else "failed"
