"""A runtime node (SPEC §3.2, §8, §10): registration, heartbeat, scheduling, recovery, shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import platform
import shutil
import subprocess
import time
import uuid
from typing import Any

from app.bundles.cache import local_bundle_dir
from app.config import Settings
from app.domain import events as ev
from app.domain.bundle import from_upload
from app.domain.canonical import format_ms
from app.domain.events import Event
from app.domain.job import (
    AdmitJob,
    Command,
    FailBootstrap,
    FailJob,
    FinishRecovery,
    Rejected,
    StartJob,
    StartRecovery,
)
from app.domain.manifest import seed_payloads
from app.domain.messages import normalize_message
from app.domain.runtime_state import JobRuntime, fold_runtime
from app.ops import metrics
from app.ops import memory
from app.runtime import modules as mod
from app.runtime.bundle_cache import BundleCache, BundleUnavailable
from app.runtime.pools import ExecutorPools, LeaseRow, parse_pool_capacities
from app.runtime.runner import (
    JobRunner,
    NodeContext,
    new_incarnation,
    new_message_id,
    payloads_path,
    retry_unavailable,
)
from app.service import BundleRegistry, NodeRegistry, Outcome, Service
from app.store import event_store, leases, read_model, scheduling, wakeups
from app.store.database import Database, is_unavailable
from app.store.leases import Fence, TakenLease
from app.store.nodes import NodeRow, heartbeat

log = logging.getLogger(__name__)

BUNDLE_TICK_SECONDS = 5.0


class BootstrapError(Exception):
    """Building the agents of a job failed; `agent_id` is the agent at fault or job_coordinator."""

    def __init__(self, agent_id: str, message: str) -> None:
        super().__init__(message)
        self.agent_id = agent_id
        self.message = message


def hardware() -> dict[str, Any]:
    """CPU, memory and GPU facts collected at start (SPEC §10.3)."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 0
    gpu: Any = "Unknown or None"
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                capture_output=True, text=True, timeout=5, check=True,
            ).stdout
            gpu = [line.strip() for line in out.splitlines() if line.strip()] or gpu
        except (OSError, subprocess.SubprocessError):
            pass
    return {
        "cpu": {"logical_processors": os.cpu_count() or 1, "architecture": platform.machine()},
        "memory": {"total_bytes": total, "total_mb": total // (1024 * 1024)},
        "gpu": gpu,
    }


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
        self.pools = ExecutorPools(self.capacities, on_change=self._mirror_lease)
        self.ctx = NodeContext(
            service=service, settings=settings, node_name=self.name, incarnation=self.incarnation,
            pools=self.pools, base_env=dict(os.environ), clock=service.clock,
            bundle_cache=BundleCache(db, settings.temp_dir, self.name),
        )
        self.registry = NodeRegistry(service)
        self.bundles = BundleRegistry(service, settings, self.name)
        self.runners: dict[str, JobRunner] = {}
        self.fenced_out = asyncio.Event()
        self._wake = asyncio.Event()
        self._dirty: set[str] = set()
        self._admit_due = False  # another process submitted (a Postgres wake-up) since the last admission
        # This process queued a job, or the last claim took as many jobs as it had free slots:
        # a wake-up claims without first asking whether anything is queued.
        self._queued_due = False
        self._tasks: list[asyncio.Task[None]] = []
        self._last_renewal = 0
        self._bundle_checks: dict[str, int] = {}
        self._stopped = False
        self._done_waiters: set[asyncio.Future[Any]] = set()
        self._mirror_pending: dict[str, LeaseRow] = {}
        self._mirror_task: asyncio.Task[None] | None = None
        self._starting: set[str] = set()  # jobs between taking their lease and having a runner
        self._next_trim = 0.0  # monotonic time of the next malloc trim (see app/ops/memory.py)
        self.listener: wakeups.Listener | None = None
        service.subscribe(self._on_commit)
        if settings.runtime_enabled:
            service.admitting_node = self.name

    @property
    def ttl_ms(self) -> int:
        """The job lease and node liveness TTL in milliseconds."""
        return int(self.settings.lease_ttl_seconds * 1000)

    # ---------------------------------------------------------------- start / stop

    async def start(self) -> None:
        """Register, scan bundles, then start heartbeat and scheduling (SPEC §1.2)."""
        started = self.service.clock()
        row = NodeRow(
            name=self.name, incarnation=self.incarnation, started_at_ms=started,
            api_enabled=self.settings.api_enabled, runtime_enabled=self.settings.runtime_enabled,
            executor_pools=self.capacities, hardware=hardware(),
        )
        payload = {
            "node": self.name, "incarnation": self.incarnation, "started_at": format_ms(started),
            "api_enabled": row.api_enabled, "runtime_enabled": row.runtime_enabled,
            "executor_pools": row.executor_pools, "hardware": row.hardware,
        }
        await self.registry.register(row, payload)
        self._last_renewal = started
        for line in await self.bundles.scan():
            log.warning("%s", line)
        self._tasks.append(asyncio.create_task(self._heartbeat_loop(), name="heartbeat"))
        if self.settings.runtime_enabled:
            self.settings.temp_dir.mkdir(parents=True, exist_ok=True)
            self._tasks.append(asyncio.create_task(self._schedule_loop(), name="scheduler"))
            self.listener = wakeups.listen(self.db, self.service.origin, self._on_wakeup)
        if self.settings.bundles_dir is not None:
            self._tasks.append(asyncio.create_task(self._bundle_loop(), name="bundle-reload"))

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
        runners = list(self.runners.values())
        for runner in runners:
            runner.stop(graceful=True)
        if runners:
            await asyncio.wait([asyncio.create_task(r.done.wait()) for r in runners], timeout=10)
        if self._mirror_task is not None:
            await asyncio.wait([self._mirror_task], timeout=10)
        try:
            async with self.db.write() as conn:  # also leases of bootstraps cut short
                released = await leases.release_all(conn, self.incarnation, self.service.clock())
            log.info(
                "node %s shutting down: released %d job lease(s) (%d by its runners, %d left over)",
                self.name, len(runners) + released, len(runners), released,
            )
            await self.registry.stopped(self.name, self.incarnation)
        except Exception as exc:
            log.warning("could not record node_stopped: %s", type(exc).__name__)

    # ---------------------------------------------------------------- wake-ups

    def _on_commit(self, stream_id: str, recorded: list[Any]) -> None:
        """The API of this process appended something: react now instead of at the next poll.

        (A submit through this process's API is admitted in its own commit: `Service.admitting_node`.)
        """
        wake = wakeups.wakeup_of([(stream_id, recorded)])
        owned = wake.jobs & self.runners.keys()
        self._queued_due = self._queued_due or wake.claim
        self._dirty |= owned
        if wake.claim or owned:
            self._wake.set()

    def _on_wakeup(self, wake: wakeups.Wakeup) -> None:
        """Another process committed work for runtime nodes (Postgres NOTIFY): react now, not at the poll."""
        self._admit_due = self._admit_due or wake.admit
        self._queued_due = self._queued_due or wake.claim
        self._dirty.update(self.runners if wake.every_job else wake.jobs & self.runners.keys())
        self._wake.set()

    async def _mirror_lease(self, row: LeaseRow) -> None:
        """Mirror executor lease requests and grants into `executor_leases` (SPEC §7.6).

        The pools call this on every change and wait for it, so it only records the lease's
        newest state; one background task writes what is pending in one transaction. Three
        write transactions per executor run (queued, held, removed), each on the critical path
        of a pool slot, had made a 200-executor fan-out 1.5× slower than the commands alone.
        """
        self._mirror_pending[row.lease_id] = row
        if self._mirror_task is None or self._mirror_task.done():
            self._mirror_task = asyncio.create_task(self._flush_mirror(), name="executor-lease-mirror")

    async def _flush_mirror(self) -> None:
        while self._mirror_pending:
            rows, self._mirror_pending = self._mirror_pending, {}
            try:
                async with self.db.write() as conn:
                    await leases.mirror_executor_leases(
                        conn, rows.values(), node=self.name, incarnation=self.incarnation
                    )
            except Exception as exc:
                log.debug("executor lease mirror failed: %s", type(exc).__name__)

    # ---------------------------------------------------------------- heartbeat

    async def _heartbeat_loop(self) -> None:
        while True:
            # A heartbeat that hangs (a dropped connection, a lock) must not stop the TTL check.
            budget = max(self.ttl_ms - (self.service.clock() - self._last_renewal), 0) / 1000
            try:
                async with asyncio.timeout(max(budget, self.settings.heartbeat_seconds)):
                    await self._heartbeat()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not is_unavailable(exc) and not isinstance(exc, TimeoutError):
                    log.exception("heartbeat failed")
            # SPEC §8.5: unable to renew for longer than the TTL → stop every job.
            if self.service.clock() - self._last_renewal > self.ttl_ms:
                self._stop_all(lease_lost=True)
            if time.monotonic() >= self._next_trim:
                self._next_trim = time.monotonic() + memory.TRIM_INTERVAL_SECONDS
                memory.trim()
            await asyncio.sleep(self.settings.heartbeat_seconds)

    async def _heartbeat(self) -> None:
        now = self.service.clock()
        owned = [*self.runners, *self._starting]
        async with self.db.write() as conn:
            mine = await heartbeat(conn, self.name, self.incarnation, now)
            if mine:
                await leases.renew_owned(conn, self.incarnation, owned, now_ms=now, ttl_ms=self.ttl_ms)
            held = await leases.held_tokens(conn, self.incarnation, now)
        if mine:
            metrics.leases_renewed(len(owned))
        if not mine:
            # Another incarnation took our name, or another node declared us lost (our leases
            # have expired and our jobs are being recovered elsewhere): fence ourselves out.
            log.error("node %s was replaced or declared lost; stopping all jobs and exiting", self.name)
            self._stop_all(lease_lost=True)
            self.fenced_out.set()
            return
        self._last_renewal = now
        gone = [
            runner
            for job_id, runner in list(self.runners.items())
            if held.get(job_id) != runner.fence.token and not runner.job.terminal
        ]
        await asyncio.gather(*(runner.lease_gone() for runner in gone))
        await self.registry.expire(self.name, self.ttl_ms)

    def _stop_all(self, *, lease_lost: bool) -> None:
        for runner in list(self.runners.values()):
            runner.stop(lease_lost=lease_lost)

    # ---------------------------------------------------------------- scheduling

    async def _schedule_loop(self) -> None:
        interval = self.settings.poll_interval_ms / 1000
        next_poll = time.monotonic() + interval
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(next_poll - time.monotonic(), 0)):
                    await self._wake.wait()
            self._wake.clear()
            try:
                if time.monotonic() >= next_poll:
                    next_poll = time.monotonic() + interval
                    await self.tick()
                else:
                    await self._react()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not is_unavailable(exc):
                    log.exception("scheduling tick failed")
                await asyncio.sleep(interval)

    async def tick(self) -> None:
        """One scheduling round: follow owned jobs, admit, recover, claim (SPEC §3.2)."""
        self._forget_finished()
        await self._follow_owned()
        await self._admit()
        await self._recover()
        await self._claim()

    async def _react(self) -> None:
        """A wake-up between two polls: act on what this process's own commits announced.

        A submit asks for admission, an admission or a finished job for a claim, a pause, cancel
        or external message for a sync of that runner. What other processes write, and leases
        that expire, wait for the poll (`tick`): querying for them on every wake-up had cost a
        busy node four extra queries per job.
        """
        self._forget_finished()
        await self._sync_dirty()
        if self._admit_due:
            await self._admit()
        if self._queued_due:
            await self._claim(known_queued=True)

    def _forget_finished(self) -> None:
        for job_id in [j for j, r in self.runners.items() if r.done.is_set()]:
            del self.runners[job_id]
        metrics.runners_active(len(self.runners))

    def _free_slots(self) -> int:
        return self.settings.max_active_jobs - len(self.runners)

    async def _follow_owned(self) -> None:
        if not self.runners:
            return
        async with self.db.read() as conn:
            heads = await scheduling.stream_heads(conn, list(self.runners))
        dirty, self._dirty = self._dirty, set()
        stale = []
        for job_id, runner in self.runners.items():
            if job_id not in heads:
                runner.stop()  # deleted by cleanup
            elif heads[job_id] > runner.job.last_sequence or job_id in dirty:
                stale.append(runner.sync())
        await asyncio.gather(*stale, return_exceptions=True)

    async def _sync_dirty(self) -> None:
        dirty, self._dirty = self._dirty, set()
        runners = [self.runners[job_id] for job_id in dirty if job_id in self.runners]
        await asyncio.gather(*(runner.sync() for runner in runners), return_exceptions=True)

    async def _admit(self) -> None:
        self._admit_due = False
        async with self.db.read() as conn:
            pending = await scheduling.pending_jobs(conn)
        # Concurrently, so that the service commits them together (group commit).
        admitted = await asyncio.gather(
            *(self.service.execute(job_id, AdmitJob(self.name)) for job_id in pending), return_exceptions=True
        )
        for result in admitted:
            # Rejected: another node admitted it first (or it was cancelled).
            if isinstance(result, BaseException) and not isinstance(result, Rejected):
                raise result
        if len(pending) == scheduling.ADMIT_PAGE:
            self._admit_due = True  # more are waiting
        if pending:
            self._wake.set()

    async def _recover(self) -> None:
        free = self._free_slots()
        if free <= 0:
            return
        now = self.service.clock()
        async with self.db.read() as conn:
            candidates = await scheduling.recoverable_jobs(conn, now_ms=now, limit=free)
        for row in candidates:
            if row.job_id in self.runners:
                # Our own lease lapsed (renewals failed): stop the local copy first; the job is
                # recovered on a later tick, by us or by another node.
                self.runners[row.job_id].stop(lease_lost=True)
                continue
            if row.job_id in self._starting:
                continue
            self._starting.add(row.job_id)
            try:
                taken = await self._take_for_recovery(row.job_id, row.last_node, leased=row.leased)
                if taken is not None:
                    await self._recover_job(row.job_id, taken)
            finally:
                self._starting.discard(row.job_id)

    async def _take_for_recovery(self, job_id: str, last_node: str | None, *, leased: bool) -> TakenLease | None:
        now = self.service.clock()
        async with self.db.write() as conn:
            if leased:
                return await leases.take_over(
                    conn, job_id, node=self.name, incarnation=self.incarnation, now_ms=now, ttl_ms=self.ttl_ms
                )
            fence = await leases.claim(
                conn, job_id, node=self.name, incarnation=self.incarnation, now_ms=now, ttl_ms=self.ttl_ms
            )
        return None if fence is None else TakenLease(fence, last_node or "", released=False)

    async def _claim(self, *, known_queued: bool = False) -> None:
        """Take the leases of up to `free` queued jobs and start them.

        The claim reads the claimed jobs' events in its own transaction, so a freed slot costs
        one transaction before the job's StartJob (it had cost a query, the claim and a read).
        """
        free = self._free_slots()
        if free <= 0:
            return
        if not known_queued:
            async with self.db.read() as conn:
                queued = await scheduling.any_queued(conn)
            if not queued:
                self._queued_due = False
                return  # nothing to claim: no write transaction on an idle tick
        claimed: list[tuple[str, Fence]] = []
        try:
            async with self.db.write() as conn:
                now = self.service.clock()
                job_ids = await scheduling.lock_queued(conn, free)
                self._queued_due = len(job_ids) >= free  # a full page: more may be waiting
                fences = await leases.claim_many(
                    conn, job_ids, node=self.name, incarnation=self.incarnation, now_ms=now, ttl_ms=self.ttl_ms
                )
                for job_id in job_ids:
                    fence = fences.get(job_id) or await self._take_over_lease(conn, job_id, now)
                    if fence is not None:
                        claimed.append((job_id, fence))
                        self._starting.add(job_id)  # the heartbeat keeps its lease alive
                streams = await event_store.read_streams(conn, [job_id for job_id, _ in claimed])
        except BaseException:
            # Including a COMMIT whose answer was lost: the leases may have been taken after all.
            # Forgotten here, the heartbeat lets them lapse (renew_owned) and a later claim takes
            # them over; kept, they would be renewed forever with no runner behind them.
            self._starting.difference_update(job_id for job_id, _ in claimed)
            raise
        await asyncio.gather(*(self._bootstrap(job_id, fence, streams[job_id]) for job_id, fence in claimed))

    async def _take_over_lease(self, conn: Any, job_id: str, now: int) -> Fence | None:
        # A lease left by a node that died between claiming and bootstrapping: take it over.
        taken = await leases.take_over(conn, job_id, node=self.name, incarnation=self.incarnation, now_ms=now, ttl_ms=self.ttl_ms)
        return None if taken is None else taken.fence

    # ---------------------------------------------------------------- bootstrap and recovery

    async def _read_job(self, job_id: str) -> JobRuntime:
        async with self.db.read() as conn:
            return fold_runtime(job_id, await event_store.read_stream(conn, job_id))

    async def _materialise(self, job: JobRuntime) -> None:
        """An uploaded bundle is materialised here instead of its path being tested (SPEC C.5.3)."""
        assert self.ctx.bundle_cache is not None
        try:
            await self.ctx.bundle_cache.ensure(job.bundle)
        except BundleUnavailable as exc:
            raise BootstrapError(ev.JOB_COORDINATOR, str(exc)) from None

    def _build_agents(self, job: JobRuntime) -> dict[str, Any]:
        """Check the bundle path and load module agents; raise BootstrapError on the first error."""
        if job.bundle is not None and not os.path.isdir(local_bundle_dir(job.bundle, self.settings.temp_dir)):
            raise BootstrapError(
                ev.JOB_COORDINATOR, f"bundle path does not exist on node {self.name}: {job.bundle['path']}"
            )
        instances: dict[str, Any] = {}
        for agent in job.agents.values():
            if agent.agent_type != "module":
                continue
            try:
                payloads = payloads_path(job, self.settings.temp_dir)
                instances[agent.agent_id] = mod.load_module_agent(agent.config, payloads)
            except mod.ModuleAgentError as exc:
                raise BootstrapError(agent.agent_id, str(exc)) from None
        return instances

    def _initial_module_states(self, runner: JobRunner) -> None:
        """`init` (or `restore` after recovery) every module agent; an error names its agent."""
        for agent_id, instance in runner.modules.items():
            agent = runner.job.agents[agent_id]
            context = runner.module_context(agent)
            try:
                if agent.processed > 0 and isinstance(agent.state, dict):
                    runner.module_states[agent_id] = mod.restore(instance, agent.state.get("snapshot"), context)
                else:
                    runner.module_states[agent_id] = instance.init(agent.config, context)
            except Exception as exc:
                raise BootstrapError(agent_id, f"agent {agent_id} raised {type(exc).__name__}: {exc}") from None

    def _seeds(self, job: JobRuntime) -> tuple[dict[str, Any], ...]:
        timestamp = format_ms(self.service.clock())
        return tuple(
            normalize_message(
                payload, message_id=new_message_id(), job_id=job.job_id, to=entrypoint, timestamp=timestamp,
                correlation_id=str(uuid.uuid4()), default_from="runtime", default_type="init", default_class="command",
            )
            for entrypoint, payloads in seed_payloads(job.manifest)
            for payload in payloads
        )

    async def _bootstrap(self, job_id: str, fence: Fence, stream: list[Event]) -> None:
        try:
            await self._bootstrap_leased(job_id, fence, stream)
        except Exception:
            # Whether or not StartJob committed, the lease must become claimable (queued job)
            # or recoverable (running job) again: let it lapse rather than delete it.
            log.exception("bootstrap of %s failed; letting its lease lapse", job_id)
            await self._lapse(job_id, fence)
        finally:
            self._starting.discard(job_id)

    async def _bootstrap_leased(self, job_id: str, fence: Fence, stream: list[Event]) -> None:
        try:
            job = fold_runtime(job_id, stream)
            try:
                await self._materialise(job)
                modules = self._build_agents(job)
                runner = JobRunner(self.ctx, job, fence, modules)
                self._initial_module_states(runner)
            except BootstrapError as exc:
                await self._execute_fenced(job_id, FailBootstrap(self.name, exc.agent_id, exc.message), fence)
                return
            except Exception as exc:
                error = f"agent {ev.JOB_COORDINATOR} raised {type(exc).__name__}: {exc}"
                await self._execute_fenced(job_id, FailBootstrap(self.name, ev.JOB_COORDINATOR, error), fence)
                return
            await runner.begin(StartJob(self.name, self._seeds(job)))
        except (Rejected, leases.LeaseLost):
            await self._give_up(job_id, fence)
            return
        self._adopt(runner)

    async def _execute_fenced(self, job_id: str, command: Command, fence: Fence) -> Outcome:
        """Commit an owner's command, retrying through a database outage while the lease may last.

        Safe after an unknown outcome: the command's id makes the write path append it once.
        """
        (result,) = await retry_unavailable(
            lambda: self.service.execute_chain(job_id, [command], fence), self.settings.lease_ttl_seconds
        )
        if isinstance(result, BaseException):
            raise result
        return result

    async def _give_up(self, job_id: str, fence: Fence) -> None:
        try:
            await self.service.release_job(job_id, fence, graceful=False, lease_lost=False)
        except Exception:
            log.debug("could not release %s", job_id, exc_info=True)

    def _adopt(self, runner: JobRunner) -> None:
        if runner.job.terminal:  # it ended in the commit that started (or recovered) it: the slot is free
            self._wake.set()
            return
        self.runners[runner.job_id] = runner
        metrics.runners_active(len(self.runners))
        runner.start()
        # A finished job frees a slot: schedule at once rather than at the next poll.
        waiter = asyncio.ensure_future(runner.done.wait())
        self._done_waiters.add(waiter)
        waiter.add_done_callback(self._runner_done)

    def _runner_done(self, waiter: asyncio.Future[Any]) -> None:
        self._done_waiters.discard(waiter)
        self._wake.set()

    async def _lapse(self, job_id: str, fence: Fence) -> None:
        try:
            async with self.db.write() as conn:
                await leases.expire(conn, job_id, fence, self.service.clock())
        except Exception:  # the heartbeat lets it lapse anyway: it renews only running jobs
            log.debug("could not expire the lease of %s", job_id, exc_info=True)

    async def _recover_job(self, job_id: str, taken: TakenLease) -> None:
        try:
            await self._recover_leased(job_id, taken)
        except Exception:
            log.exception("recovery of %s failed; letting its lease lapse", job_id)
            await self._lapse(job_id, taken.fence)

    async def _catch_up(self, job: JobRuntime, recorded: list[Any]) -> None:
        """Apply events just committed, reading first whatever other writers appended before them."""
        fresh = [e for e in recorded if e.sequence > job.last_sequence]
        if fresh and fresh[0].sequence != job.last_sequence + 1:
            async with self.db.read() as conn:
                fresh = await event_store.read_stream(conn, job.job_id, after=job.last_sequence)
        for event in fresh:
            job.apply(event)

    async def _recover_leased(self, job_id: str, taken: TakenLease) -> None:
        fence = taken.fence
        cause = "node_shutdown" if taken.released else "lease_expired"
        try:
            job = await self._read_job(job_id)
            started = await self._execute_fenced(job_id, StartRecovery(self.name, taken.from_node, cause), fence)
            if not started.events:
                return
            await self._catch_up(job, started.events)
            if job.terminal:
                return
            try:
                await self._materialise(job)
                modules = self._build_agents(job)
                runner = JobRunner(self.ctx, job, fence, modules)
                self._initial_module_states(runner)
            except BootstrapError as exc:
                await self._execute_fenced(job_id, FailJob(exc.agent_id, exc.message), fence)
                return
            manual = job.manifest["policies"].get("recovery_mode") == "manual_recover"
            outcome = await self._execute_fenced(
                job_id, FinishRecovery(job.recovery_count, tuple(job.agents), manual), fence
            )
        except (Rejected, leases.LeaseLost):
            return
        await runner.absorb(outcome.events)
        self._adopt(runner)

    # ---------------------------------------------------------------- bundles

    async def _bundle_loop(self) -> None:
        while True:
            await asyncio.sleep(BUNDLE_TICK_SECONDS)
            try:
                await self._reload_due_bundles()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not is_unavailable(exc):
                    log.exception("bundle interval scan failed")

    async def _reload_due_bundles(self) -> None:
        async with self.db.read() as conn:
            views = await read_model.registered_bundle_views(conn)
        # New directories are registered every tick, whatever the reload mode (SPEC C.5.5).
        await self.bundles.discover({view["bundle_id"] for view in views})
        now = self.service.clock()
        for view in views:
            if from_upload(view):
                continue  # an uploaded version has no directory to re-read; scans never replace it
            mode = self.settings.bundle_reload_mode or view["reload"].get("mode")
            interval = self.settings.bundle_reload_interval_seconds or view["reload"].get("interval_seconds", 60)
            if mode != "interval":
                continue
            last = self._bundle_checks.setdefault(view["bundle_id"], now)
            if now - last >= float(interval) * 1000:
                self._bundle_checks[view["bundle_id"]] = now
                await self.bundles.reload(view["bundle_id"], view["path"], "interval_scan")

