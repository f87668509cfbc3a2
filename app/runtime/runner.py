"""JobRunner: runs one job's agents on its owner node, every step committed through the service.

The runner's picture of the job is a fold of the job's own log (`JobRuntime`): it absorbs the
events its commits return and polls for the ones other writers append (pause, resume, cancel,
external messages). Each agent is a task that takes the oldest message of its mailbox, looks its
agent type up in the table of kinds (`domain/agent_kinds.KINDS`) and hands the step to the part
that does that kind's I/O: `JobCommits` (decided steps and every commit), `ExecutorSteps`
(commands in leased sandboxes) or `ModuleSteps` (trusted Python classes). The CommitStep carries
the agent's processed count, so a step can never be recorded twice (SPEC §8.4).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Any

from app.domain.agent_kinds import CallsModule, Decided, RunsCommand, kind_of
from app.domain.agents import raised_failure
from app.domain.events import Event
from app.domain.job import CommitStep, FailStep, Rejected, StartJob
from app.domain.runtime_state import AgentRuntime, JobRuntime
from app.domain.steps import MAX_CHAIN
from app.ops import metrics, tracing
from app.runtime.commits import JobCommits, retry_unavailable
from app.runtime.context import NodeContext, new_message_id, payloads_path
from app.runtime.executor_steps import ExecutorSteps
from app.runtime.module_steps import ModuleSteps
from app.store import event_store
from app.store.database import is_unavailable
from app.store.leases import Fence, LeaseLost

# What the node (and the tests) import from here; the parts live in their own modules.
__all__ = [
    "MAX_CHAIN", "JobRunner", "NodeContext", "new_incarnation", "new_message_id", "payloads_path",
    "retry_unavailable",
]

log = logging.getLogger(__name__)


class JobRunner:
    """Runs the agents of one job for as long as this node holds its lease."""

    def __init__(self, ctx: NodeContext, job: JobRuntime, fence: Fence, modules: dict[str, Any]) -> None:
        self.ctx = ctx
        self.job = job
        self.fence = fence
        self.modules = modules
        self.module_states: dict[str, Any] = {}
        self.commits = JobCommits(ctx, job, fence, self.absorb)
        self.executor_steps = ExecutorSteps(ctx, job, self.commits)
        self.module_steps = ModuleSteps(ctx, job, self.commits, self.modules, self.module_states)
        # One wake-up per agent: a shared Condition woke every agent task on every commit, which
        # made a 200-executor fan-out quadratic in task switches.
        self._wakeups = {agent_id: asyncio.Event() for agent_id in job.agents}
        self._fold_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._lease_lost = False
        self._graceful = False
        self.done = asyncio.Event()

    @property
    def job_id(self) -> str:
        """The job this runner runs."""
        return self.job.job_id

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Start one task per agent."""
        for agent in self.job.agents.values():
            self._tasks.append(asyncio.create_task(self._agent_loop(agent), name=f"{self.job_id}/{agent.agent_id}"))
        if self.job.terminal:
            self.stop()

    def stop(self, *, lease_lost: bool = False, graceful: bool = False) -> None:
        """Stop every agent (killing running commands) and then give the lease up."""
        if lease_lost and not self._lease_lost:
            log.warning("lost the lease of %s; stopping it without writing", self.job_id, extra={"job_id": self.job_id})
            metrics.lease_lost()
        self._lease_lost = self._lease_lost or lease_lost
        self._graceful = self._graceful or graceful
        if self._stopping:
            return
        self._stopping = True
        asyncio.get_running_loop().create_task(self._shutdown())

    async def _shutdown(self) -> None:
        self._wake_ready()
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        await asyncio.gather(*(t for t in self._tasks if t is not current), return_exceptions=True)
        try:
            # After the terminal event there is nothing to release: the transaction that
            # recorded it deleted the job's lease and executor lease rows (Service, drop_jobs).
            if not self.job.terminal:
                await self.ctx.service.release_job(
                    self.job_id, self.fence, graceful=self._graceful, lease_lost=self._lease_lost
                )
        except Exception:
            log.warning("could not release the lease of %s; it will expire", self.job_id, exc_info=True)
        self.done.set()

    # ---------------------------------------------------------------- the job's log

    async def sync(self) -> None:
        """Fold every event appended after what this runner has seen."""
        async with self._fold_lock:
            await self._read_new()
        await self._changed()

    async def _read_new(self) -> None:
        async with self.ctx.service.db.read() as conn:
            fresh = await event_store.read_stream(conn, self.job_id, after=self.job.last_sequence)
        for event in fresh:
            self.job.apply(event)

    async def absorb(self, recorded: list[Event]) -> None:
        """Fold the events commits of this runner returned, in order (reading any gap before or among them)."""
        async with self._fold_lock:
            fresh = [e for e in recorded if e.sequence > self.job.last_sequence]
            if fresh and fresh[0].sequence == self.job.last_sequence + 1 == fresh[-1].sequence - len(fresh) + 1:
                for event in fresh:
                    self.job.apply(event)
            elif fresh:
                await self._read_new()
        await self._changed()

    async def _changed(self) -> None:
        if self.job.terminal:
            self.stop()
        self._wake_ready()

    def _wake_ready(self) -> None:
        """Wake the agents that have something to do (all of them when stopping)."""
        for agent_id, agent in self.job.agents.items():
            if self._ready(agent):
                self._wakeups.setdefault(agent_id, asyncio.Event()).set()

    # ---------------------------------------------------------------- what the node asks of the parts

    async def begin(self, start: StartJob) -> None:
        """Commit the job's start with the decided steps its seeds lead to; raise what the start raised."""
        await self.commits.begin(start)

    def chain_after(self, first: StartJob | CommitStep | FailStep) -> list[CommitStep | FailStep]:
        """The decided steps that `first`'s deliveries lead to (see `steps.chain_after`)."""
        return self.commits.chain_after(first)

    def module_context(self, agent: AgentRuntime) -> dict[str, Any]:
        """The context object given to module agent methods (SPEC §7.7)."""
        return self.module_steps.context(agent)

    # ---------------------------------------------------------------- agents

    def _ready(self, agent: AgentRuntime) -> bool:
        return self._stopping or (self.job.status == "running" and bool(agent.queue))

    async def _agent_loop(self, agent: AgentRuntime) -> None:
        wakeup = self._wakeups.setdefault(agent.agent_id, asyncio.Event())
        while True:
            while not self._ready(agent):
                wakeup.clear()
                await wakeup.wait()
            if self._stopping:
                return
            before = (self.job.last_sequence, agent.processed)
            try:
                await self._step(agent, agent.queue[0], agent.processed)
            except LeaseLost:
                await self.lease_gone()
                return
            except Rejected:
                await self.sync()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if is_unavailable(exc):
                    # The database stayed away longer than the lease (see JobCommits.execute): another node,
                    # or this one, recovers the job from its events once it is back (SPEC §8.5).
                    self.stop(lease_lost=True)
                    return
                await self._fail_unexpected(agent, exc)
            if (self.job.last_sequence, agent.processed) == before:
                await asyncio.sleep(self.ctx.settings.poll_interval_ms / 1000)

    async def lease_gone(self) -> None:
        """Stop: a commit or the heartbeat found the job's lease gone.

        Either the job ended (a cancel or cleanup through any node's API drops the lease in the
        terminal commit) or another node took it over. Reading is allowed without the lease; only
        a take-over is reported as a lost lease.
        """
        with contextlib.suppress(Exception):
            await self.sync()  # a terminal event stops the runner (see _changed)
        if self.job.terminal and self.job.node == self.ctx.node_name:
            log.info("%s ended (%s) through the API; stopping it, its unfinished step dropped", self.job_id, self.job.status)
            self.stop()
        else:
            self.stop(lease_lost=True)

    async def _fail_unexpected(self, agent: AgentRuntime, exc: Exception) -> None:
        """An exception while handling a message fails the job (SPEC §7.1); it is never retried."""
        log.warning("step of %s/%s raised %s", self.job_id, agent.agent_id, type(exc).__name__, exc_info=exc)
        try:
            await self.commits.fail(agent.agent_id, raised_failure(agent.agent_id, exc))
        except LeaseLost:
            self.stop(lease_lost=True)
        except Rejected:
            await self.sync()
        except Exception:
            log.exception("could not record the failure of %s; letting its lease lapse", self.job_id)
            self.stop(lease_lost=True)

    async def _step(self, agent: AgentRuntime, message: dict[str, Any], expected: int) -> None:
        """Take the agent's step of `message`, by the kind of its agent type."""
        attributes = {"job_id": self.job_id, "agent_id": agent.agent_id, "agent_type": agent.agent_type}
        with tracing.span("mirror_neuron.agent_step", attributes):
            match kind_of(agent.agent_type):
                case Decided():
                    await self.commits.decided_step(agent, message, expected)
                case RunsCommand() as kind:
                    await self.executor_steps.step(kind, agent, message, expected)
                case CallsModule() as kind:
                    await self.module_steps.step(kind, agent, message, expected)


def new_incarnation() -> str:
    """A fresh node incarnation id."""
    return str(uuid.uuid4())
