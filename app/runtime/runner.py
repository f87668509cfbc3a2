"""JobRunner: runs one job's agents on its owner node, every step committed through the service.

The runner's picture of the job is a fold of the job's own log (`JobRuntime`): it absorbs the
events its commits return and polls for the ones other writers append (pause, resume, cancel,
external messages). Each agent is a task that takes the oldest message of its mailbox, runs
its handler, and commits the step; the CommitStep carries the agent's processed count, so a
step can never be recorded twice (SPEC §8.4).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.bundles.cache import local_bundle_dir
from app.config import Settings
from app.domain import agents as builtin
from app.domain import events as ev
from app.domain import executor as exd
from app.domain.agents import Action, Complete, Emit, Record, StepContext, Topology, materialize
from app.domain.canonical import format_ms, require_string_keys
from app.domain.events import Event, NewEvent
from app.domain.job import Command, CommitStep, FailStep, RecordAgentEvents, Rejected, StartJob
from app.domain.manifest import executor_uploads
from app.domain.messages import message_id_from_bytes, received_payload
from app.domain.runtime_state import AgentRuntime, JobRuntime
from app.ops import metrics, tracing
from app.runtime import modules as mod
from app.runtime.bundle_cache import BundleCache
from app.runtime.executor import AttemptRequest, run_attempt
from app.runtime.pools import ExecutorPools, LeaseError
from app.service import Outcome, Service
from app.store import event_store
from app.store.database import is_unavailable
from app.store.leases import Fence, LeaseLost

log = logging.getLogger(__name__)

# Agent types whose step can be chained (`JobRunner.chain_after`), and the longest chain.
CHAINABLE = frozenset({"router", "aggregator", "sensor"})
MAX_CHAIN = 64

MODULE_OPTION_KEYS = ("class", "correlation_id", "content_type", "content_encoding", "headers", "artifacts", "stream")


@dataclass
class NodeContext:
    """What every runner of a node shares."""

    service: Service
    settings: Settings
    node_name: str
    incarnation: str
    pools: ExecutorPools
    base_env: Mapping[str, str]
    clock: Callable[[], int]
    bundle_cache: BundleCache | None = None


def new_message_id() -> str:
    """A fresh 14-character message id (SPEC §6.1)."""
    return message_id_from_bytes(secrets.token_bytes(10))


def payloads_path(job: JobRuntime, temp_dir: Path) -> str | None:
    """The bundle's payloads directory on this node (an upload's is in the cache), else None."""
    return None if job.bundle is None else os.path.join(local_bundle_dir(job.bundle, temp_dir), "payloads")


class JobRunner:
    """Runs the agents of one job for as long as this node holds its lease."""

    def __init__(self, ctx: NodeContext, job: JobRuntime, fence: Fence, modules: dict[str, Any]) -> None:
        self.ctx = ctx
        self.job = job
        self.fence = fence
        self.topology = Topology.of(job.manifest)
        self.modules = modules
        self.module_states: dict[str, Any] = {}
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

    async def _execute(self, command: Command) -> None:
        """Commit a command; while the database is unreachable, retry until the lease would lapse."""
        await self._execute_chain([command])

    async def _record(self, agent_id: str, message: dict[str, Any], *events: NewEvent) -> None:
        await self._execute(RecordAgentEvents(agent_id, events, message["envelope"]["message_id"]))

    async def _execute_chain(self, commands: list[Command]) -> None:
        """Commit a command and the steps chained after it (see `chain_after`); raise what the first raised.

        A chained step that is dropped leaves its message in the mailbox, where the agent's own
        task takes it up. While the database is unreachable (the first command failing so), the
        whole chain is retried until the lease would lapse. A retry is safe whatever became of
        the attempt before it (a commit whose acknowledgement was lost): every command carries an
        id derived from what it does, and the write path appends a command once, answering a
        retry of a committed one with the events it appended (`Service.execute`).
        """
        results = await retry_unavailable(
            lambda: self.ctx.service.execute_chain(self.job_id, commands, self.fence),
            self.ctx.settings.lease_ttl_seconds,
        )
        await self.absorb([e for r in results if isinstance(r, Outcome) for e in r.events])

    async def begin(self, start: StartJob) -> None:
        """Commit the job's start with the builtin steps its seeds lead to; raise what the start raised."""
        await self._execute_chain([start, *self.chain_after(start)])

    def chain_after(self, first: StartJob | CommitStep | FailStep) -> list[CommitStep | FailStep]:
        """The builtin steps that `first`'s deliveries lead to, decided now to commit right after it.

        Router, aggregator and sensor handlers are pure functions of the agent's state and the
        message, so the step an idle one would take once `first` commits can be decided before:
        the job's slot then costs one commit instead of one per step. A recipient is taken when it
        is idle here (empty mailbox), receives exactly one message in the whole chain so far, and
        has not stepped in it; the step is marked `chained`, so the write path drops it unless the
        message is still alone in the mailbox of a running job. The chain stops at a step that
        ends the job, and at MAX_CHAIN steps.
        """
        if not isinstance(first, StartJob) and self.job.status != "running":
            return []
        chain: list[CommitStep | FailStep] = []
        delivered: Counter[str] = Counter(to for to, _ in _deliveries(first))
        stepped: set[str] = set()
        ahead: list[StartJob | CommitStep | FailStep] = [first]
        while ahead:
            command = ahead.pop(0)
            if _ends_job(command):
                return chain
            for to, message in _deliveries(command):
                agent = self.job.agents.get(to)
                if (
                    agent is None or agent.agent_type not in CHAINABLE or delivered[to] != 1 or to in stepped
                    or agent.queue or agent.head_received
                ):
                    continue
                step = self._builtin_command(agent, message, agent.processed, chained=True)
                chain.append(step)
                stepped.add(to)
                delivered.update(t for t, _ in _deliveries(step))
                if _ends_job(step) or len(chain) >= MAX_CHAIN:
                    return chain
                ahead.append(step)
        return chain

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
                    # The database stayed away longer than the lease (see _execute): another node,
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
        error = f"agent {agent.agent_id} raised {type(exc).__name__}: {exc}"
        try:
            await self._fail(agent.agent_id, error, {"error": error})
        except LeaseLost:
            self.stop(lease_lost=True)
        except Rejected:
            await self.sync()
        except Exception:
            log.exception("could not record the failure of %s; letting its lease lapse", self.job_id)
            self.stop(lease_lost=True)

    async def _step(self, agent: AgentRuntime, message: dict[str, Any], expected: int) -> None:
        attributes = {"job_id": self.job_id, "agent_id": agent.agent_id, "agent_type": agent.agent_type}
        with tracing.span("mirror_neuron.agent_step", attributes):
            if agent.agent_type == "executor":
                await self._executor_step(agent, message, expected)
            elif agent.agent_type == "module":
                await self._module_step(agent, message, expected)
            else:
                await self._builtin_step(agent, message, expected)

    def _step_context(self, agent: AgentRuntime, message: dict[str, Any]) -> StepContext:
        return StepContext(
            job_id=self.job_id,
            agent_id=agent.agent_id,
            incoming=message,
            topology=self.topology,
            timestamp=format_ms(self.ctx.clock()),
            new_id=new_message_id,
        )

    async def _commit(
        self, agent: AgentRuntime, message: dict[str, Any], expected: int, state: Any,
        head: tuple[NewEvent, ...], actions: list[Action],
    ) -> None:
        produced, completion = materialize(self._step_context(agent, message), actions)
        message_id = message["envelope"]["message_id"]
        await self._execute(
            CommitStep(agent.agent_id, message_id, expected, state, (*head, *produced), completion)
        )

    async def _fail(self, agent_id: str, error: str, details: dict[str, Any], *events: NewEvent) -> None:
        await self._execute(FailStep(agent_id, error, details, events))

    async def _builtin_step(self, agent: AgentRuntime, message: dict[str, Any], expected: int) -> None:
        step = self._builtin_command(agent, message, expected)
        await self._execute_chain([step, *self.chain_after(step)])

    def _builtin_command(
        self, agent: AgentRuntime, message: dict[str, Any], expected: int, *, chained: bool = False
    ) -> CommitStep | FailStep:
        """A router, aggregator or sensor step as a command (its handler is pure: nothing runs outside)."""
        received = NewEvent(ev.AGENT_MESSAGE_RECEIVED, received_payload(message), agent.agent_id)
        try:
            if agent.agent_type == "aggregator":
                handled, _ = builtin.handle_aggregator(agent.agent_id, agent.config, agent.aggregate, message)
            elif agent.agent_type == "sensor":
                handled = builtin.handle_sensor(agent.agent_id, agent.config, agent.state, message)
            else:
                handled = builtin.handle_router(agent.agent_id, agent.config, agent.state, message)
        except Exception as exc:
            error = f"agent {agent.agent_id} raised {type(exc).__name__}: {exc}"
            return FailStep(agent.agent_id, error, {"error": error}, (received,))
        produced, completion = materialize(self._step_context(agent, message), list(handled.actions))
        message_id = message["envelope"]["message_id"]
        return CommitStep(
            agent.agent_id, message_id, expected, handled.state, (received, *produced), completion, chained
        )

    # ---------------------------------------------------------------- executor

    async def _executor_step(self, agent: AgentRuntime, message: dict[str, Any], expected: int) -> None:
        aid = agent.agent_id
        settings = exd.executor_settings(agent.config, self.ctx.settings.executor_timeout_seconds)
        await self._record(aid, message, NewEvent(ev.AGENT_MESSAGE_RECEIVED, received_payload(message), aid))
        if agent.processed == 0 and settings.startup_delay_ms > 0:
            await asyncio.sleep(settings.startup_delay_ms / 1000)
        lease_request = {"pool": settings.pool, "slots": settings.pool_slots}
        await self._record(aid, message, NewEvent(ev.EXECUTOR_LEASE_REQUESTED, lease_request, aid))
        metadata = {"job_id": self.job_id, "agent_id": aid, "node": self.ctx.node_name}
        try:
            grant = await self.ctx.pools.acquire(settings.pool, settings.pool_slots, metadata)
        except LeaseError as exc:
            await self._fail(aid, str(exc), exd.failure_details(None, str(exc), 0))
            return
        try:
            await self._run_executor(agent, message, expected, settings, grant)
        finally:
            await self.ctx.pools.release(grant.lease_id)

    async def _ensure_bundle(self) -> None:
        """Bring back an uploaded version removed from the cache since bootstrap (a tmp cleaner).

        Best effort: when it cannot be done the attempt fails its own upload checks (§7.5.3).
        """
        if self.ctx.bundle_cache is None:
            return
        try:
            await self.ctx.bundle_cache.ensure(self.job.bundle)
        except Exception as exc:
            log.warning("could not materialise the bundle of %s: %s", self.job_id, exc)

    async def _run_executor(
        self, agent: AgentRuntime, message: dict[str, Any], expected: int, settings: exd.ExecutorSettings, grant: Any
    ) -> None:
        aid = agent.agent_id
        lease = {"lease_id": grant.lease_id, "pool": grant.pool, "slots": grant.slots}
        await self._record(aid, message, NewEvent(ev.EXECUTOR_LEASE_ACQUIRED, {**lease, "queue_wait_ms": grant.queue_wait_ms}, aid))
        body = message.get("body")
        body = {} if body is None else body
        persisted = agent.state if isinstance(agent.state, dict) else {}
        agent_state = persisted.get("agent_state", {})
        await self._ensure_bundle()
        request = AttemptRequest(
            job_id=self.job_id, agent_id=aid, agent_type=agent.agent_type, template=str(agent.spec.get("type")),
            settings=settings, uploads=executor_uploads(agent.config), message=message, body=body,
            agent_state=agent_state, payloads_dir=payloads_path(self.job, self.ctx.settings.temp_dir), node_name=self.ctx.node_name,
            temp_dir=str(self.ctx.settings.temp_dir), output_cap_bytes=self.ctx.settings.executor_output_cap_bytes,
            base_env=self.ctx.base_env,
        )
        released = NewEvent(ev.EXECUTOR_LEASE_RELEASED, lease, aid)
        attempt = 0
        while True:
            attempt += 1
            outcome = await metrics.executor_attempt(run_attempt(request))
            if outcome.ok:
                break
            error = outcome.error or "executor attempt failed"
            retry = outcome.transient and attempt < settings.max_attempts
            wait_ms = exd.backoff_ms(settings, attempt) if retry else None
            failed = NewEvent(
                ev.EXECUTOR_ATTEMPT_FAILED,
                {
                    "attempt": attempt, "max_attempts": settings.max_attempts, "error": error,
                    "exit_code": outcome.run_result.get("exit_code"), "transient": outcome.transient,
                    "retry_in_ms": wait_ms, "sandbox_name": outcome.sandbox_name, "pool": grant.pool,
                },
                aid,
            )
            if wait_ms is None:
                await self._fail(aid, error, exd.failure_details(outcome.run_result, error, attempt), failed, released)
                return
            await self._record(aid, message, failed)
            await asyncio.sleep(wait_ms / 1000)
        completed = NewEvent(
            ev.SANDBOX_JOB_COMPLETED,
            {"sandbox_name": outcome.sandbox_name, "exit_code": 0, "attempts": attempt, "lease_id": grant.lease_id, "pool": grant.pool},
            aid,
        )
        output = exd.output_payload(aid, outcome.run_result, attempt, grant.record(), body)
        actions: list[Action] = []
        if settings.output_message_type is not None:
            options = {**builtin.RESULT_OPTIONS, "headers": exd.RESULT_HEADERS}
            actions.append(Emit(settings.output_message_type, output, options=options))
        if settings.complete_job:
            actions.append(Complete(output))
        try:
            structured = exd.parse_structured_stdout(outcome.run_result["stdout"], outcome.run_result["stdout_truncated"])
        except ValueError as exc:  # an integer no double equals (SPEC C.1.2): the step fails
            error = f"agent {aid} raised {type(exc).__name__}: {exc}"
            await self._fail(aid, error, {"error": error}, released)
            return
        if structured is not None:
            for item in exd.structured_actions(structured, ev.RESERVED_TYPES):
                match item:
                    case exd.NextState():
                        agent_state = item.state
                    case exd.CustomEvent():
                        actions.append(Record(NewEvent(item.type, item.payload, aid)))
                    case exd.Emit():
                        actions.append(Emit(item.type, item.body, item.to, item.options))
                    case exd.Complete():
                        actions.append(Complete(item.result))
                    case exd.CompleteWithOutput():
                        actions.append(Complete(output))
        state = {"runs": int(persisted.get("runs", 0)) + 1, "agent_state": agent_state}
        await self._commit(agent, message, expected, state, (released, completed), actions)

    # ---------------------------------------------------------------- module

    def module_context(self, agent: AgentRuntime) -> dict[str, Any]:
        """The context object given to module agent methods (SPEC §7.7)."""
        return {
            "job_id": self.job_id, "agent_id": agent.agent_id, "agent_type": agent.agent_type,
            "template_type": agent.spec.get("type"), "config": agent.config,
            "payloads_path": payloads_path(self.job, self.ctx.settings.temp_dir), "node": self.ctx.node_name,
        }

    def _module_actions(self, aid: str, raw_actions: list[Any]) -> list[Action]:
        actions: list[Action] = []
        for raw in raw_actions:
            kind = raw.get("action") if isinstance(raw, dict) else None
            if kind in ("emit", "emit_to"):
                options = {k: raw[k] for k in MODULE_OPTION_KEYS if k in raw}
                to = str(raw.get("to")) if kind == "emit_to" else None
                actions.append(Emit(str(raw.get("type")), raw.get("body"), to, options))
            elif kind == "event":
                type_ = str(raw.get("type"))
                if type_ in ev.RESERVED_TYPES:
                    raise mod.ModuleAgentError(f'agent {aid} cannot emit reserved event type "{type_}"')
                payload = raw.get("payload")
                actions.append(Record(NewEvent(type_, payload if isinstance(payload, dict) else {}, aid)))
            elif kind == "complete_job":
                actions.append(Complete(raw.get("result")))
            else:
                raise mod.ModuleAgentError(f'agent {aid} returned an unknown action "{kind}"')
        return actions

    async def _module_step(self, agent: AgentRuntime, message: dict[str, Any], expected: int) -> None:
        aid = agent.agent_id
        await self._record(aid, message, NewEvent(ev.AGENT_MESSAGE_RECEIVED, received_payload(message), aid))
        instance = self.modules[aid]
        try:
            new_state, raw_actions = await mod.call_handle(
                instance, self.module_states.get(aid), message, self.module_context(agent)
            )
            require_string_keys(raw_actions)  # see canonical.require_string_keys
            actions = self._module_actions(aid, raw_actions)
            snap = mod.snapshot(instance, new_state, aid)
        except asyncio.CancelledError:
            raise
        except mod.ModuleAgentError as exc:
            await self._fail(aid, str(exc), {"error": str(exc)})
            return
        except Exception as exc:
            error = f"agent {aid} raised {type(exc).__name__}: {exc}"
            await self._fail(aid, error, {"error": error})
            return
        await self._commit(agent, message, expected, {"snapshot": snap}, (), actions)
        self.module_states[aid] = new_state


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


def _deliveries(command: StartJob | CommitStep | FailStep) -> list[tuple[str, dict[str, Any]]]:
    """(recipient, message) of every message `command` delivers, in order."""
    if isinstance(command, StartJob):
        return [(m["envelope"]["to"], m) for m in command.seeds]
    return [(e.agent_id, e.payload["message"]) for e in command.events if e.type == ev.MESSAGE_DELIVERED and e.agent_id]


def _ends_job(command: StartJob | CommitStep | FailStep) -> bool:
    return isinstance(command, FailStep) or (isinstance(command, CommitStep) and command.completion is not None)


def new_incarnation() -> str:
    """A fresh node incarnation id."""
    return str(uuid.uuid4())
