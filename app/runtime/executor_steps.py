"""The I/O of an executor step (SPEC §7.5): lease pool slots, run the attempts, commit between them.

What each moment means (the lease events, a failed attempt's retry or failure, the finished
step) is decided by `domain/executor_step.py` and the agent type's `RunsCommand` kind; this
module only waits, runs (`runtime/executor.py`) and commits (`JobCommits`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from app.domain import executor as exd
from app.domain import executor_step as xs
from app.domain.agent_kinds import RunsCommand
from app.domain.agents import Failed
from app.domain.manifest import executor_uploads
from app.domain.runtime_state import AgentRuntime, JobRuntime
from app.domain.steps import received
from app.ops import metrics
from app.runtime.commits import JobCommits
from app.runtime.context import NodeContext, payloads_path
from app.runtime.executor import AttemptRequest, run_attempt
from app.runtime.pools import LeaseError, LeaseGrant

log = logging.getLogger(__name__)


class ExecutorSteps:
    """Runs the steps of one job's agents whose kind runs a command."""

    def __init__(self, ctx: NodeContext, job: JobRuntime, commits: JobCommits) -> None:
        self.ctx = ctx
        self.job = job
        self.commits = commits

    async def step(self, kind: RunsCommand, agent: AgentRuntime, message: dict[str, Any], expected: int) -> None:
        """Take the step of `message`: received, lease requested and held for the attempts, then committed."""
        aid = agent.agent_id
        settings = exd.executor_settings(agent.config, self.ctx.settings.executor_timeout_seconds)
        await self.commits.record(aid, message, received(aid, message))
        if agent.processed == 0 and settings.startup_delay_ms > 0:
            await asyncio.sleep(settings.startup_delay_ms / 1000)
        await self.commits.record(aid, message, xs.lease_requested(aid, settings))
        metadata = {"job_id": self.job.job_id, "agent_id": aid, "node": self.ctx.node_name}
        try:
            grant = await self.ctx.pools.acquire(settings.pool, settings.pool_slots, metadata)
        except LeaseError as exc:
            await self.commits.fail(aid, xs.lease_refused(str(exc)))
            return
        try:
            await self._run(kind, agent, message, expected, settings, grant)
        finally:
            await self.ctx.pools.release(grant.lease_id)

    async def _run(
        self, kind: RunsCommand, agent: AgentRuntime, message: dict[str, Any], expected: int,
        settings: exd.ExecutorSettings, grant: LeaseGrant,
    ) -> None:
        aid = agent.agent_id
        lease = {"lease_id": grant.lease_id, "pool": grant.pool, "slots": grant.slots}
        await self.commits.record(aid, message, xs.lease_acquired(aid, lease, grant.queue_wait_ms))
        body = message.get("body")
        body = {} if body is None else body
        await self._ensure_bundle()
        request = self._request(agent, message, body, settings)
        attempt = 0
        while True:
            attempt += 1
            outcome = await metrics.executor_attempt(run_attempt(request))
            if outcome.ok:
                break
            match xs.attempt_failed(aid, settings, attempt, outcome, lease):
                case xs.Retry() as retry:
                    await self.commits.record(aid, message, retry.event)
                    await asyncio.sleep(retry.wait_ms / 1000)
                case Failed() as failed:
                    await self.commits.fail(aid, failed)
                    return
        done = xs.Finished(aid, settings, agent.state, body, attempt, outcome, lease, grant.record())
        await self.commits.commit(agent, message, expected, kind.finished(done))

    def _request(
        self, agent: AgentRuntime, message: dict[str, Any], body: Any, settings: exd.ExecutorSettings
    ) -> AttemptRequest:
        return AttemptRequest(
            job_id=self.job.job_id, agent_id=agent.agent_id, agent_type=agent.agent_type,
            template=str(agent.spec.get("type")), settings=settings, uploads=executor_uploads(agent.config),
            message=message, body=body, agent_state=xs.agent_state(agent.state),
            payloads_dir=payloads_path(self.job, self.ctx.settings.temp_dir), node_name=self.ctx.node_name,
            temp_dir=str(self.ctx.settings.temp_dir), output_cap_bytes=self.ctx.settings.executor_output_cap_bytes,
            base_env=self.ctx.base_env,
        )

    async def _ensure_bundle(self) -> None:
        """Bring back an uploaded version removed from the cache since bootstrap (a tmp cleaner).

        Best effort: when it cannot be done the attempt fails its own upload checks (§7.5.3).
        """
        if self.ctx.bundle_cache is None:
            return
        try:
            await self.ctx.bundle_cache.ensure(self.job.bundle)
        except Exception as exc:
            log.warning("could not materialise the bundle of %s: %s", self.job.job_id, exc)
