"""Starting one job on this node (SPEC §3.2, §8.6): bootstrap after a claim, recovery after a take-over.

The scheduler takes a job's lease and hands the job here with its fence; the starter builds the
job's agents, commits StartJob (or StartRecovery and FinishRecovery) under that fence and gives
the runner to the node's `OwnedJobs`. Whatever fails, the lease is let lapse or given back, never
kept without a runner.
"""

from __future__ import annotations

import logging
import os
import uuid
from typing import Any

from app.bundles.cache import local_bundle_dir
from app.config import Settings
from app.domain import events as ev
from app.domain.agent_kinds import calls_module
from app.domain.canonical import format_ms
from app.domain.events import Event
from app.domain.job import Command, FailBootstrap, FailJob, FinishRecovery, Rejected, StartJob, StartRecovery
from app.domain.manifest import seed_payloads
from app.domain.messages import normalize_message
from app.domain.runtime_state import JobRuntime, fold_runtime
from app.runtime import modules as mod
from app.runtime.bundle_cache import BundleUnavailable
from app.runtime.jobs import OwnedJobs
from app.runtime.runner import JobRunner, NodeContext, new_message_id, payloads_path, retry_unavailable
from app.service import Outcome
from app.store import event_store, leases
from app.store.database import Database
from app.store.leases import Fence, TakenLease

log = logging.getLogger(__name__)


class BootstrapError(Exception):
    """Building the agents of a job failed; `agent_id` is the agent at fault or job_coordinator."""

    def __init__(self, agent_id: str, message: str) -> None:
        super().__init__(message)
        self.agent_id = agent_id
        self.message = message


class JobStarter:
    """Bootstraps claimed jobs and recovers taken-over ones, one job per call."""

    def __init__(self, ctx: NodeContext, db: Database, jobs: OwnedJobs) -> None:
        self.ctx = ctx
        self.db = db
        self.jobs = jobs
        self.service = ctx.service
        self.settings: Settings = ctx.settings
        self.name = ctx.node_name

    # ---------------------------------------------------------------- bootstrap

    async def bootstrap(self, job_id: str, fence: Fence, stream: list[Event]) -> None:
        """Start a claimed job from its events; its lease lapses if that fails."""
        try:
            await self._bootstrap_leased(job_id, fence, stream)
        except Exception:
            # Whether or not StartJob committed, the lease must become claimable (queued job)
            # or recoverable (running job) again: let it lapse rather than delete it.
            log.exception("bootstrap of %s failed; letting its lease lapse", job_id)
            await self._lapse(job_id, fence)
        finally:
            self.jobs.end_starting([job_id])

    async def _bootstrap_leased(self, job_id: str, fence: Fence, stream: list[Event]) -> None:
        try:
            job = fold_runtime(job_id, stream)
            try:
                runner = await self._build_runner(job, fence)
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
        self.jobs.adopt(runner)

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

    # ---------------------------------------------------------------- recovery

    async def recover(self, job_id: str, taken: TakenLease) -> None:
        """Recover a job whose lease this node took over; its lease lapses if that fails."""
        try:
            await self._recover_leased(job_id, taken)
        except Exception:
            log.exception("recovery of %s failed; letting its lease lapse", job_id)
            await self._lapse(job_id, taken.fence)

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
                runner = await self._build_runner(job, fence)
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
        self.jobs.adopt(runner)

    async def _read_job(self, job_id: str) -> JobRuntime:
        async with self.db.read() as conn:
            return fold_runtime(job_id, await event_store.read_stream(conn, job_id))

    async def _catch_up(self, job: JobRuntime, recorded: list[Any]) -> None:
        """Apply events just committed, reading first whatever other writers appended before them."""
        fresh = [e for e in recorded if e.sequence > job.last_sequence]
        if fresh and fresh[0].sequence != job.last_sequence + 1:
            async with self.db.read() as conn:
                fresh = await event_store.read_stream(conn, job.job_id, after=job.last_sequence)
        for event in fresh:
            job.apply(event)

    # ---------------------------------------------------------------- the job's agents

    async def _build_runner(self, job: JobRuntime, fence: Fence) -> JobRunner:
        """The job's runner with its bundle present and its module agents loaded and initialised."""
        await self._materialise(job)
        modules = self._build_agents(job)
        runner = JobRunner(self.ctx, job, fence, modules)
        self._initial_module_states(runner)
        return runner

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
            if not calls_module(agent.agent_type):
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

    # ---------------------------------------------------------------- commits under the fence

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

    async def _lapse(self, job_id: str, fence: Fence) -> None:
        try:
            async with self.db.write() as conn:
                await leases.expire(conn, job_id, fence, self.service.clock())
        except Exception:  # the heartbeat lets it lapse anyway: it renews only running jobs
            log.debug("could not expire the lease of %s", job_id, exc_info=True)
