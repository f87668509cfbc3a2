"""Job commands and the pure decision function (SPEC §3.3).

`decide(state, command)` returns the events a command produces, or raises `Rejected`.
It reads nothing but its arguments: ids, timestamps and node names arrive inside the command.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from app.domain import events as ev
from app.domain.agents import Completion
from app.domain.events import NewEvent
from app.domain.projection import AgentView, JobProjection

PAUSED_BY_OPERATOR = "paused by operator"
RESUMED_BY_OPERATOR = "resumed by operator"
CANCELLED_BY_OPERATOR = "cancelled by operator"
CANCELLED_BY_CLEANUP = "cancelled by cleanup"
AWAITING_MANUAL_RECOVERY = "awaiting manual recovery"


class Rejected(Exception):
    """A command the job's state does not allow; `kind` is not_found, conflict or dropped."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


# ---------------------------------------------------------------- commands


@dataclass(frozen=True)
class SubmitJob:
    """Record a new job from a normalised manifest."""

    payload: dict[str, Any]


@dataclass(frozen=True)
class AdmitJob:
    """Move a pending job into the run queue."""

    node: str


@dataclass(frozen=True)
class StartJob:
    """Bootstrap success: the owner delivers the seed messages and starts the job."""

    node: str
    seeds: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class FailBootstrap:
    """Bootstrap failure on the owner."""

    node: str
    agent_id: str
    error: str


@dataclass(frozen=True)
class PauseJob:
    """Operator pause."""

    reason: str = PAUSED_BY_OPERATOR


@dataclass(frozen=True)
class ResumeJob:
    """Operator resume."""

    reason: str = RESUMED_BY_OPERATOR


@dataclass(frozen=True)
class CancelJob:
    """Operator (or cleanup) cancel."""

    reason: str = CANCELLED_BY_OPERATOR


@dataclass(frozen=True)
class DeliverExternal:
    """Deliver an already normalised external message to one agent."""

    agent_id: str
    message: dict[str, Any]


@dataclass(frozen=True)
class RecordAgentEvents:
    """Events an agent commits on their own while a step is under way (received, leases, attempts).

    `message_id`: the message whose step records them (it names the command, see `command_id`).
    """

    agent_id: str
    events: tuple[NewEvent, ...]
    message_id: str = ""


@dataclass(frozen=True)
class CommitStep:
    """A successful step: its events, `message_processed`, and the completion if any.

    `chained`: the step was decided before its message committed, to be committed right after the
    step that delivers it (`Service.execute_chain`). It is dropped unless the job is running and the
    message is the only one in the agent's mailbox, so mailbox order holds (SPEC §7.1).
    """

    agent_id: str
    message_id: str
    expected_processed: int
    state: Any
    events: tuple[NewEvent, ...] = ()
    completion: Completion | None = None
    chained: bool = False


@dataclass(frozen=True)
class FailStep:
    """A failed step: its final events, then `job_failed`."""

    agent_id: str
    error: str
    details: dict[str, Any]
    events: tuple[NewEvent, ...] = ()


@dataclass(frozen=True)
class StartRecovery:
    """A node took over an expired or released lease (SPEC §8.2 steps 2–3)."""

    node: str
    from_node: str | None
    cause: str


@dataclass(frozen=True)
class FinishRecovery:
    """The agents (graph-node order) were rebuilt (SPEC §8.2 step 4)."""

    attempt: int
    agent_ids: tuple[str, ...]
    manual: bool


@dataclass(frozen=True)
class FailJob:
    """A job-level failure on the owner (recovery error)."""

    agent_id: str
    error: str
    details: dict[str, Any] | None = None


Command = (
    SubmitJob
    | AdmitJob
    | StartJob
    | FailBootstrap
    | PauseJob
    | ResumeJob
    | CancelJob
    | DeliverExternal
    | RecordAgentEvents
    | CommitStep
    | FailStep
    | StartRecovery
    | FinishRecovery
    | FailJob
)

# Commands issued by the job's owner: the store checks the job lease in the same transaction.
FENCED_COMMANDS = (
    StartJob,
    FailBootstrap,
    RecordAgentEvents,
    CommitStep,
    FailStep,
    StartRecovery,
    FinishRecovery,
    FailJob,
)


def command_id(command: Command, lease: str | None) -> str | None:
    """The id of a command, derived from what it does: the write path appends a command once.

    `lease` names the job lease the command is sent under (incarnation and fencing token); a
    node that takes a job over sends commands of its own, so a step it re-runs after a recovery
    is new (SPEC §4.7 rule 8) while a retry of the same command by the same owner is not. Within
    one lease a step is named by its agent and message, and each of its own commits by the event
    it starts with (an attempt by its number). An admission happens once per job. A submit's
    job id is new, and operator commands have no natural id: the HTTP layer names them by their
    Idempotency-Key, if any.
    """
    if isinstance(command, AdmitJob):
        return "admit"
    if lease is None:
        return None
    match command:
        case StartJob() | FailBootstrap():
            return f"{lease}:start"
        case StartRecovery():
            return f"{lease}:recovery"
        case FinishRecovery():
            return f"{lease}:recovered"
        case FailJob():
            return f"{lease}:job-failed"
        case CommitStep():
            return f"{lease}:{command.agent_id}:{command.message_id}:step"
        case FailStep():
            return f"{lease}:{command.agent_id}:failed"
        case RecordAgentEvents():
            message_id = command.message_id or _received_message_id(command.events)
            if not message_id:
                return None  # nothing names its step: better no id than two steps under one
            return f"{lease}:{command.agent_id}:{message_id}:{_recorded_kind(command.events)}"
    return None


def _received_message_id(events: tuple[NewEvent, ...]) -> str:
    first = events[0] if events else None
    if first is not None and first.type == ev.AGENT_MESSAGE_RECEIVED:
        return str(first.payload.get("message_id") or "")
    return ""


def _recorded_kind(events: tuple[NewEvent, ...]) -> str:
    if not events:
        return "empty"
    first = events[0]
    if first.type == ev.EXECUTOR_ATTEMPT_FAILED:
        return f"{first.type}:{first.payload.get('attempt')}"
    return first.type


@dataclass(frozen=True)
class Decision:
    """The events to append (possibly none: an idempotent no-op)."""

    events: tuple[NewEvent, ...] = field(default_factory=tuple)


# ---------------------------------------------------------------- helpers


def submitted_payload(
    *,
    manifest: dict[str, Any],
    bundle: dict[str, Any] | None,
    idempotency_key: str | None,
    request_sha256: str,
) -> dict[str, Any]:
    """Build the `job_submitted` payload (SPEC §4.2) from a normalised manifest."""
    policies = manifest["policies"]
    return {
        "manifest": manifest,
        "graph_id": manifest["graph_id"],
        "job_name": manifest["job_name"],
        "daemon": manifest["daemon"],
        "root_agent_ids": list(manifest["entrypoints"]),
        "policies": {
            "placement_policy": policies["placement_policy"],
            "recovery_mode": policies["recovery_mode"],
            "max_agent_restart_attempts": policies["max_agent_restart_attempts"],
        },
        "manifest_ref": {
            "graph_id": manifest["graph_id"],
            "manifest_version": manifest["manifest_version"],
            "manifest_path": None if bundle is None else f"{bundle['path']}/manifest.json",
            "job_path": None if bundle is None else bundle["path"],
        },
        "bundle": bundle,
        "idempotency_key": idempotency_key,
        "request_sha256": request_sha256,
    }


def failure_result(agent_id: str, error: str, details: dict[str, Any] | None) -> dict[str, Any]:
    """The `result` of a failed job (SPEC §3.4)."""
    result: dict[str, Any] = {"agent_id": agent_id, "error": error}
    if details is not None:
        result["details"] = details
    return result


def _failed(agent_id: str, error: str, details: dict[str, Any] | None) -> NewEvent:
    return NewEvent(
        ev.JOB_FAILED, {"reason": error, "result": failure_result(agent_id, error, details)}, agent_id
    )


def _live(state: JobProjection | None, job_id: str = "") -> JobProjection:
    if state is None:
        raise Rejected("not_found", f"job {job_id} was not found")
    return state


def _require(state: JobProjection, statuses: tuple[str, ...]) -> None:
    if state.job.status not in statuses:
        raise Rejected("dropped", f"job {state.job.job_id} is {state.job.status}")


def _agent(state: JobProjection, agent_id: str) -> AgentView:
    agent = state.agents.get(agent_id)
    if agent is None:
        raise Rejected("not_found", f"agent {agent_id} was not found in job {state.job.job_id}")
    return agent


def _terminal_conflict(state: JobProjection) -> Rejected:
    job = state.job
    return Rejected("conflict", f"job {job.job_id} is already in a terminal state ({job.status})")


# ---------------------------------------------------------------- per command


def _submit(state: JobProjection | None, cmd: SubmitJob) -> Decision:
    if state is not None:
        raise Rejected("conflict", f"job {state.job.job_id} already exists")
    return Decision((NewEvent(ev.JOB_SUBMITTED, cmd.payload),))


def _admit(state: JobProjection, cmd: AdmitJob) -> Decision:
    _require(state, ("pending",))
    return Decision((NewEvent(ev.JOB_QUEUED, {"node": cmd.node}),))


def _start(state: JobProjection, cmd: StartJob) -> Decision:
    _require(state, ("queued",))
    seeds = tuple(
        NewEvent(
            ev.MESSAGE_DELIVERED,
            {"message": m, "route": "seed", "edge_id": None},
            m["envelope"]["to"],
        )
        for m in cmd.seeds
    )
    return Decision(
        (NewEvent(ev.JOB_SCHEDULED, {"node": cmd.node}), *seeds, NewEvent(ev.JOB_RUNNING, {}))
    )


def _fail_bootstrap(state: JobProjection, cmd: FailBootstrap) -> Decision:
    _require(state, ("queued",))
    return Decision(
        (NewEvent(ev.JOB_SCHEDULED, {"node": cmd.node}), _failed(cmd.agent_id, cmd.error, None))
    )


def _pause(state: JobProjection, cmd: PauseJob) -> Decision:
    if state.job.status != "running":
        raise Rejected("conflict", f"job {state.job.job_id} is not running")
    return Decision((NewEvent(ev.JOB_PAUSED, {"reason": cmd.reason}),))


def _resume(state: JobProjection, cmd: ResumeJob) -> Decision:
    if state.job.status != "paused":
        raise Rejected("conflict", f"job {state.job.job_id} is not paused")
    return Decision((NewEvent(ev.JOB_RESUMED, {"reason": cmd.reason}),))


def _cancel(state: JobProjection, cmd: CancelJob) -> Decision:
    if state.job.status == "cancelled":
        return Decision()
    if state.job.terminal:
        raise _terminal_conflict(state)
    payload = {"reason": cmd.reason, "result": {"reason": cmd.reason}}
    return Decision((NewEvent(ev.JOB_CANCELLED, payload),))


def _deliver_external(state: JobProjection, cmd: DeliverExternal) -> Decision:
    _agent(state, cmd.agent_id)
    if state.job.terminal:
        raise _terminal_conflict(state)
    if state.job.status not in ("running", "paused"):
        raise Rejected("conflict", f"job {state.job.job_id} is not running")
    payload = {"message": cmd.message, "route": "external", "edge_id": None}
    return Decision((NewEvent(ev.MESSAGE_DELIVERED, payload, cmd.agent_id),))


def _record(state: JobProjection, cmd: RecordAgentEvents) -> Decision:
    _require(state, ("running", "paused"))
    _agent(state, cmd.agent_id)
    return Decision(cmd.events)


def _commit_step(state: JobProjection, cmd: CommitStep) -> Decision:
    _require(state, ("running", "paused"))
    agent = _agent(state, cmd.agent_id)
    if agent.processed_messages != cmd.expected_processed:
        raise Rejected("dropped", f"message {cmd.message_id} of {cmd.agent_id} was already processed")
    if cmd.chained and (
        state.job.status != "running" or agent.mailbox_depth != 1 or agent.inflight_message_id is not None
    ):
        raise Rejected("dropped", f"message {cmd.message_id} of {cmd.agent_id} is not alone in its mailbox")
    processed = NewEvent(
        ev.MESSAGE_PROCESSED, {"message_id": cmd.message_id, "state": cmd.state}, cmd.agent_id
    )
    tail: tuple[NewEvent, ...] = ()
    if cmd.completion is not None:
        result = {"agent_id": cmd.completion.agent_id, "output": cmd.completion.output}
        tail = (NewEvent(ev.JOB_COMPLETED, {"result": result}, cmd.completion.agent_id),)
    return Decision((*cmd.events, processed, *tail))


def _fail_step(state: JobProjection, cmd: FailStep) -> Decision:
    _require(state, ("running", "paused"))
    return Decision((*cmd.events, _failed(cmd.agent_id, cmd.error, cmd.details)))


def _start_recovery(state: JobProjection, cmd: StartRecovery) -> Decision:
    _require(state, ("running", "paused"))
    job = state.job
    counted = cmd.cause == "lease_expired"
    limit = job.max_agent_restart_attempts
    if counted and limit is not None and job.counted_recoveries >= limit:
        error = f"job {job.job_id} exceeded restart attempts ({limit})"
        return Decision((_failed(ev.JOB_COORDINATOR, error, None),))
    payload = {
        "node": cmd.node,
        "from_node": cmd.from_node,
        "attempt": job.recovery_count + 1,
        "cause": cmd.cause,
        "counted": counted,
    }
    return Decision((NewEvent(ev.JOB_RECOVERY_STARTED, payload),))


def _recovered(agent: AgentView, attempt: int) -> NewEvent:
    # Counted from the locked projection, not from the recovering node's earlier read, so that a
    # message delivered meanwhile is included (Appendix B.15: the in-flight message counts too).
    depth = agent.mailbox_depth + (1 if agent.inflight_message_id is not None else 0)
    payload = {"attempt": attempt, "mailbox_depth": depth, "inflight_message_id": agent.inflight_message_id}
    return NewEvent(ev.AGENT_RECOVERED, payload, agent.agent_id)


def _finish_recovery(state: JobProjection, cmd: FinishRecovery) -> Decision:
    _require(state, ("running", "paused"))
    recovered = tuple(_recovered(_agent(state, agent_id), cmd.attempt) for agent_id in cmd.agent_ids)
    pause: tuple[NewEvent, ...] = ()
    if cmd.manual and state.job.status == "running":
        pause = (NewEvent(ev.JOB_PAUSED, {"reason": AWAITING_MANUAL_RECOVERY}),)
    return Decision((*recovered, *pause))


def _fail_job(state: JobProjection, cmd: FailJob) -> Decision:
    _require(state, ("running", "paused", "queued"))
    return Decision((_failed(cmd.agent_id, cmd.error, cmd.details),))


def decide(state: JobProjection | None, command: Command, job_id: str = "") -> Decision:
    """Return the events `command` produces against `state`, or raise `Rejected`."""
    if isinstance(command, SubmitJob):
        return _submit(state, command)
    current = _live(state, job_id)
    if current.job.terminal and not isinstance(command, CancelJob | DeliverExternal | PauseJob | ResumeJob):
        raise _terminal_conflict(current)
    match command:
        case AdmitJob():
            return _admit(current, command)
        case StartJob():
            return _start(current, command)
        case FailBootstrap():
            return _fail_bootstrap(current, command)
        case PauseJob():
            return _pause(current, command)
        case ResumeJob():
            return _resume(current, command)
        case CancelJob():
            return _cancel(current, command)
        case DeliverExternal():
            return _deliver_external(current, command)
        case RecordAgentEvents():
            return _record(current, command)
        case CommitStep():
            return _commit_step(current, command)
        case FailStep():
            return _fail_step(current, command)
        case StartRecovery():
            return _start_recovery(current, command)
        case FinishRecovery():
            return _finish_recovery(current, command)
        case FailJob():
            return _fail_job(current, command)
    raise TypeError(f"unknown command {command!r}")
