"""A runtime node (SPEC §3.2, §8, §10): the parts of one server process's runtime, started and stopped together.

The parts, each testable alone:
- `OwnedJobs` (jobs.py) owns the runner table, the jobs being started and the free slots. It is
  the one place a runner is added (`adopt`, by the job starter) or forgotten (`forget_finished`,
  by the scheduler); the free slots are `max_active_jobs` minus its runners, asked by the
  scheduler before it admits, claims or recovers.
- `Scheduler` (scheduler.py) admits, claims and recovers jobs, follows the jobs the node runs and
  reacts to wake-ups; it takes leases and marks those jobs starting.
- `JobStarter` (starter.py) bootstraps a claimed job or recovers a taken-over one under its fence
  and hands the runner to `OwnedJobs`.
- `Membership` (membership.py) registers the node, beats (renewing the owned jobs' leases) and
  fences the node out when it was replaced or declared lost.
- `ExecutorLeaseMirror` (lease_mirror.py) writes the executor pools' requests and grants into
  `executor_leases`.
- `BundleScanner` (bundle_scanner.py) scans MIRROR_NEURON_BUNDLES_DIR at start and at intervals.
A freed slot (a runner done, a job that ended as it started) wakes the scheduler: `OwnedJobs`
calls back into the node, which wakes it.
"""

from __future__ import annotations

import asyncio
import logging
import os

from app.config import Settings
from app.runtime.bundle_cache import BundleCache
from app.runtime.bundle_scanner import BundleScanner
from app.runtime.jobs import OwnedJobs
from app.runtime.lease_mirror import ExecutorLeaseMirror
from app.runtime.membership import Membership
from app.runtime.pools import ExecutorPools, parse_pool_capacities
from app.runtime.runner import JobRunner, NodeContext, new_incarnation
from app.runtime.scheduler import Scheduler
from app.runtime.starter import JobStarter
from app.service import Service
from app.store import leases, wakeups
from app.store.database import Database

log = logging.getLogger(__name__)

SHUTDOWN_WAIT_SECONDS = 10


class Node:
    """One server process's runtime: owns the jobs it claimed and keeps its leases alive."""

    def __init__(self, settings: Settings, db: Database, service: Service) -> None:
        self.settings = settings
        self.db = db
        self.service = service
        self.name = settings.node_name
        self.incarnation = new_incarnation()
        capacities, warnings = parse_pool_capacities(
            settings.executor_max_concurrency, settings.executor_pool_capacities
        )
        for warning in warnings:
            log.warning("%s", warning)
        self.capacities = capacities if settings.runtime_enabled else {}
        self.lease_mirror = ExecutorLeaseMirror(db, self.name, self.incarnation)
        self.pools = ExecutorPools(self.capacities, on_change=self.lease_mirror.record)
        self.ctx = NodeContext(
            service=service, settings=settings, node_name=self.name, incarnation=self.incarnation,
            pools=self.pools, base_env=dict(os.environ), clock=service.clock,
            bundle_cache=BundleCache(db, settings.temp_dir, self.name),
        )
        self.jobs = OwnedJobs(settings.max_active_jobs, on_slot_freed=self._slot_freed)
        self.starter = JobStarter(self.ctx, db, self.jobs)
        self.scheduler = Scheduler(settings, db, service, self.jobs, self.starter, incarnation=self.incarnation)
        self.membership = Membership(
            settings, db, service, self.jobs, incarnation=self.incarnation, capacities=self.capacities
        )
        self.bundle_scanner = BundleScanner(settings, db, service)
        self.fenced_out = self.membership.fenced_out
        self.listener: wakeups.Listener | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopped = False
        service.subscribe(self.scheduler.on_commit)
        if settings.runtime_enabled:
            service.admitting_node = self.name

    @property
    def ttl_ms(self) -> int:
        """The job lease and node liveness TTL in milliseconds."""
        return int(self.settings.lease_ttl_seconds * 1000)

    @property
    def runners(self) -> dict[str, JobRunner]:
        """The runner of each job this node runs, by job id."""
        return self.jobs.runners

    def _slot_freed(self) -> None:
        self.scheduler.wake()

    async def start(self) -> None:
        """Register, scan bundles, then start heartbeat and scheduling (SPEC §1.2)."""
        await self.membership.register()
        await self.bundle_scanner.scan_at_start()
        self._tasks.append(asyncio.create_task(self.membership.run(), name="heartbeat"))
        if self.settings.runtime_enabled:
            self.settings.temp_dir.mkdir(parents=True, exist_ok=True)
            self._tasks.append(asyncio.create_task(self.scheduler.run(), name="scheduler"))
            self.listener = wakeups.listen(self.db, self.service.origin, self.scheduler.on_wakeup)
        if self.settings.bundles_dir is not None:
            self._tasks.append(asyncio.create_task(self.bundle_scanner.run(), name="bundle-reload"))

    async def stop(self) -> None:
        """Graceful shutdown (SPEC §10.4): stop agents, release leases, mark the node stopped."""
        if self._stopped:
            return
        self._stopped = True
        if self.listener is not None:
            await self.listener.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        stopped = await self.jobs.stop_gracefully(SHUTDOWN_WAIT_SECONDS)
        await self.lease_mirror.drain(SHUTDOWN_WAIT_SECONDS)
        try:
            async with self.db.write() as conn:  # also leases of bootstraps cut short
                released = await leases.release_all(conn, self.incarnation, self.service.clock())
            log.info(
                "node %s shutting down: released %d job lease(s) (%d by its runners, %d left over)",
                self.name, stopped + released, stopped, released,
            )
            await self.membership.leave()
        except Exception as exc:
            log.warning("could not record node_stopped: %s", type(exc).__name__)
