"""The write side of one job's runner: every command it commits, and the decided steps it chains.

`JobCommits` sends commands through the write path (`Service.execute_chain`) under the job's
fence, retrying while the database is unreachable, and hands the events they appended back to
the runner's fold. Decided steps (router, aggregator, sensor) are committed here together with
the decided steps their deliveries lead to (`steps.chain_after`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from app.domain.agent_kinds import Decided, kind_of
from app.domain.agents import Failed, Handled, StepContext, Topology
from app.domain.canonical import format_ms
from app.domain.events import Event, NewEvent
from app.domain.job import Command, CommitStep, FailStep, RecordAgentEvents, StartJob
from app.domain.runtime_state import AgentRuntime, JobRuntime
from app.domain.steps import chain_after, decided_step, fail_command, step_command
from app.runtime.context import NodeContext, new_message_id
from app.service import Outcome
from app.store.database import is_unavailable
from app.store.leases import Fence


class JobCommits:
    """Commits one job's commands under its fence; `absorb` folds the events they appended."""

    def __init__(
        self, ctx: NodeContext, job: JobRuntime, fence: Fence, absorb: Callable[[list[Event]], Awaitable[None]]
    ) -> None:
        self.ctx = ctx
        self.job = job
        self.fence = fence
        self.topology = Topology.of(job.manifest)
        self._absorb = absorb

    async def execute(self, command: Command) -> None:
        """Commit a command; while the database is unreachable, retry until the lease would lapse."""
        await self.execute_chain([command])

    async def execute_chain(self, commands: list[Command]) -> None:
        """Commit a command and the steps chained after it (see `chain_after`); raise what the first raised.

        A chained step that is dropped leaves its message in the mailbox, where the agent's own
        task takes it up. While the database is unreachable (the first command failing so), the
        whole chain is retried until the lease would lapse. A retry is safe whatever became of
        the attempt before it (a commit whose acknowledgement was lost): every command carries an
        id derived from what it does, and the write path appends a command once, answering a
        retry of a committed one with the events it appended (`Service.execute`).
        """
        results = await retry_unavailable(
            lambda: self.ctx.service.execute_chain(self.job.job_id, commands, self.fence),
            self.ctx.settings.lease_ttl_seconds,
        )
        await self._absorb([e for r in results if isinstance(r, Outcome) for e in r.events])

    async def record(self, agent_id: str, message: dict[str, Any], *events: NewEvent) -> None:
        """Commit events an agent records while its step of `message` is under way."""
        await self.execute(RecordAgentEvents(agent_id, events, message["envelope"]["message_id"]))

    async def fail(self, agent_id: str, failed: Failed) -> None:
        """Commit the failure of an agent's step, which fails the job."""
        await self.execute(fail_command(agent_id, failed))

    async def commit(
        self, agent: AgentRuntime, message: dict[str, Any], expected: int, outcome: Handled | Failed
    ) -> None:
        """Commit the end of an agent's step of `message` (its `expected` processed count guards it)."""
        await self.execute(step_command(self.step_context(agent.agent_id, message), expected, outcome))

    def step_context(self, agent_id: str, message: dict[str, Any]) -> StepContext:
        """What turning a step of `message` into events needs: ids, topology and the time now."""
        return StepContext(
            job_id=self.job.job_id,
            agent_id=agent_id,
            incoming=message,
            topology=self.topology,
            timestamp=format_ms(self.ctx.clock()),
            new_id=new_message_id,
        )

    async def begin(self, start: StartJob) -> None:
        """Commit the job's start with the decided steps its seeds lead to; raise what the start raised."""
        await self.execute_chain([start, *self.chain_after(start)])

    async def decided_step(self, agent: AgentRuntime, message: dict[str, Any], expected: int) -> None:
        """Commit a decided step with the decided steps its deliveries lead to."""
        step = self.decide(agent, message, expected)
        await self.execute_chain([step, *self.chain_after(step)])

    def decide(
        self, agent: AgentRuntime, message: dict[str, Any], expected: int, *, chained: bool = False
    ) -> CommitStep | FailStep:
        """A decided agent's step of `message` as a command (its handler is pure: nothing runs outside)."""
        kind = kind_of(agent.agent_type)
        if not isinstance(kind, Decided):
            raise TypeError(f"a step of agent type {agent.agent_type} is not decided")
        return decided_step(kind, agent, message, self.step_context(agent.agent_id, message), expected, chained=chained)

    def chain_after(self, first: StartJob | CommitStep | FailStep) -> list[CommitStep | FailStep]:
        """The decided steps that `first`'s deliveries lead to, marked chained (see `steps.chain_after`)."""
        return chain_after(
            self.job, first, lambda agent, message: self.decide(agent, message, agent.processed, chained=True)
        )


async def retry_unavailable(
    attempt: Callable[[], Awaitable[list[Outcome | BaseException]]], budget_seconds: float
) -> list[Outcome | BaseException]:
    """Run `attempt` until its first result is not a database outage, for at most `budget_seconds`.

    Raises what the first result raised otherwise. Only safe for commands that carry ids (every
    fenced command does): a retry after an unknown outcome must not append twice.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + budget_seconds
    while True:
        results = await attempt()
        first = results[0]
        if not isinstance(first, BaseException):
            return results
        if not is_unavailable(first) or loop.time() >= deadline:
            raise first
        await asyncio.sleep(0.5)
