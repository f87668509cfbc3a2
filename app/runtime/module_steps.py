"""The I/O of a module agent's step (SPEC §7.7): call the trusted class, keep its live state.

Loading the classes is `runtime/modules.py`'s; what a step's return means (its actions, its
checked state, how a raise fails the job) is `domain/module_step.py`'s and the agent type's
`CallsModule` kind's. `ModuleSteps` holds the instances and their live states for one job.
"""

from __future__ import annotations

from typing import Any

from app.domain import module_step
from app.domain.agent_kinds import CallsModule
from app.domain.agents import Handled
from app.domain.runtime_state import AgentRuntime, JobRuntime
from app.domain.steps import received
from app.runtime import modules as mod
from app.runtime.commits import JobCommits
from app.runtime.context import NodeContext, payloads_path


class ModuleSteps:
    """Runs the steps of one job's module agents; `instances` and `states` are keyed by agent id."""

    def __init__(
        self, ctx: NodeContext, job: JobRuntime, commits: JobCommits, instances: dict[str, Any], states: dict[str, Any]
    ) -> None:
        self.ctx = ctx
        self.job = job
        self.commits = commits
        self.instances = instances
        self.states = states

    def context(self, agent: AgentRuntime) -> dict[str, Any]:
        """The context object given to module agent methods (SPEC §7.7)."""
        return {
            "job_id": self.job.job_id, "agent_id": agent.agent_id, "agent_type": agent.agent_type,
            "template_type": agent.spec.get("type"), "config": agent.config,
            "payloads_path": payloads_path(self.job, self.ctx.settings.temp_dir), "node": self.ctx.node_name,
        }

    async def step(self, kind: CallsModule, agent: AgentRuntime, message: dict[str, Any], expected: int) -> None:
        """Take the step of `message`: received, `handle` called, its actions and snapshot committed."""
        aid = agent.agent_id
        await self.commits.record(aid, message, received(aid, message))
        instance = self.instances[aid]
        try:
            new_state, raw_actions = await mod.call_handle(instance, self.states.get(aid), message, self.context(agent))
            actions = kind.returned(aid, raw_actions)
            snap = mod.snapshot(instance, new_state, aid)
        except Exception as exc:
            await self.commits.fail(aid, module_step.failure(aid, exc))
            return
        await self.commits.commit(agent, message, expected, Handled(tuple(actions), {"snapshot": snap}))
        self.states[aid] = new_state
