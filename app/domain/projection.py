"""The job and agent projections as a pure fold of job events (SPEC §4.6).

The store persists exactly these values; `rebuild` folds the same functions over the log,
so the incremental projection and a rebuild cannot disagree.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from app.domain import events as ev
from app.domain import upcasting
from app.domain.agent_kinds import runs_command
from app.domain.events import Event


@dataclass(frozen=True)
class JobView:
    """One row of the `jobs` projection."""

    job_id: str
    graph_id: str
    job_name: str
    status: str
    status_reason: str | None
    daemon: bool
    submitted_at: str
    updated_at: str
    root_agent_ids: tuple[str, ...]
    placement_policy: str
    recovery_policy: str
    max_agent_restart_attempts: int | None
    result: Any
    node: str | None
    nodes: tuple[str, ...]
    recovery_count: int
    counted_recoveries: int
    last_sequence: int
    last_hash: str
    last_event: str | None
    last_timestamp: str
    manifest_ref: dict[str, Any]
    bundle: dict[str, Any] | None
    idempotency_key: str | None
    request_sha256: str | None
    executor_count: int
    sandbox_names: tuple[str, ...]

    @property
    def terminal(self) -> bool:
        """True once a terminal event was recorded."""
        return self.status in ev.TERMINAL_STATUSES


@dataclass(frozen=True)
class AgentView:
    """One row of the `agents` projection."""

    job_id: str
    agent_id: str
    ordinal: int
    agent_type: str
    template: str
    role: str | None
    processed_messages: int = 0
    mailbox_depth: int = 0
    inflight_message_id: str | None = None
    state: Any = None
    last_error: str | None = None
    runs: int = 0
    sandbox_name: str | None = None
    sandbox_exit_code: int | None = None
    sandbox_pool: str | None = None
    sandbox_at: str | None = None
    lease_id: str | None = None
    lease_pool: str | None = None
    lease_slots: int | None = None


_V = TypeVar("_V", "JobView", "AgentView")


def replace(view: _V, **changes: Any) -> _V:
    """`dataclasses.replace` for the frozen views, without running `__init__` again.

    The views are plain frozen dataclasses (no `__post_init__`, no slots), so a copy of the
    instance dictionary with the changed fields is the same value; folds call this for every
    event, and `dataclasses.replace` was half the cost of a rebuild.
    """
    new = object.__new__(type(view))
    new.__dict__.update(view.__dict__)
    new.__dict__.update(changes)
    return new


_T = TypeVar("_T")


def build(cls: type[_T], values: dict[str, Any]) -> _T:
    """`cls(**values)` for a plain frozen dataclass (the views, Event) without `__init__` (see
    `replace`): the store builds one from every row it loads, and a frozen dataclass's
    `__init__` sets its fields one `object.__setattr__` at a time. `values` must name every field."""
    new = object.__new__(cls)
    new.__dict__.update(values)
    return new


@dataclass(frozen=True)
class JobProjection:
    """A job row with the agent rows an event sequence touched."""

    job: JobView
    agents: Mapping[str, AgentView]


def _last_event_label(event: Event) -> str:
    return f"{event.type}({event.agent_id})" if event.agent_id is not None else event.type


def _submitted(event: Event) -> JobProjection:
    p = event.payload
    manifest = p["manifest"]
    policies = p["policies"]
    job = JobView(
        job_id=event.stream_id,
        graph_id=p["graph_id"],
        job_name=p["job_name"],
        status="pending",
        status_reason=None,
        daemon=bool(p["daemon"]),
        submitted_at=event.timestamp,
        updated_at=event.timestamp,
        root_agent_ids=tuple(p["root_agent_ids"]),
        placement_policy=policies["placement_policy"],
        recovery_policy=policies["recovery_mode"],
        max_agent_restart_attempts=None if p["daemon"] else policies["max_agent_restart_attempts"],
        result=None,
        node=None,
        nodes=(),
        recovery_count=0,
        counted_recoveries=0,
        last_sequence=event.sequence,
        last_hash=event.hash,
        last_event=_last_event_label(event),
        last_timestamp=event.timestamp,
        manifest_ref=p["manifest_ref"],
        bundle=None if p["bundle"] is None else {k: p["bundle"][k] for k in ("bundle_id", "fingerprint")},
        idempotency_key=p["idempotency_key"],
        request_sha256=p["request_sha256"],
        executor_count=sum(1 for n in manifest["nodes"] if runs_command(n["agent_type"])),
        sandbox_names=(),
    )
    agents = {
        n["node_id"]: AgentView(
            job_id=event.stream_id,
            agent_id=n["node_id"],
            ordinal=i,
            agent_type=n["agent_type"],
            template=n["type"],
            role=n.get("role"),
        )
        for i, n in enumerate(manifest["nodes"])
    }
    return JobProjection(job, agents)


def _status(status: str, reason: str | None = None) -> Callable[[JobView, Event], JobView]:
    def apply(job: JobView, event: Event) -> JobView:
        return replace(job, status=status, status_reason=reason)

    return apply


def _with_reason(status: str) -> Callable[[JobView, Event], JobView]:
    def apply(job: JobView, event: Event) -> JobView:
        return replace(job, status=status, status_reason=event.payload.get("reason"))

    return apply


def _terminal(status: str) -> Callable[[JobView, Event], JobView]:
    def apply(job: JobView, event: Event) -> JobView:
        reason = None if status == "completed" else event.payload.get("reason")
        return replace(job, status=status, status_reason=reason, result=event.payload.get("result"))

    return apply


def _scheduled(job: JobView, event: Event) -> JobView:
    node = event.payload["node"]
    return replace(job, node=node, nodes=tuple(sorted({*job.nodes, node})))


def _recovery_started(job: JobView, event: Event) -> JobView:
    node = event.payload["node"]
    counted = 1 if event.payload.get("counted") else 0
    return replace(
        job,
        node=node,
        nodes=tuple(sorted({*job.nodes, node})),
        recovery_count=job.recovery_count + 1,
        counted_recoveries=job.counted_recoveries + counted,
    )


def _add_sandbox_name(job: JobView, event: Event) -> JobView:
    name = event.payload.get("sandbox_name")
    if not isinstance(name, str) or name in job.sandbox_names:
        return job
    return replace(job, sandbox_names=tuple(sorted({*job.sandbox_names, name})))


_JOB_EFFECTS: dict[str, Callable[[JobView, Event], JobView]] = {
    ev.JOB_QUEUED: _status("queued"),
    ev.JOB_SCHEDULED: _scheduled,
    ev.JOB_RUNNING: _status("running"),
    ev.JOB_PAUSED: _with_reason("paused"),
    ev.JOB_RESUMED: _status("running"),
    ev.JOB_RECOVERY_STARTED: _recovery_started,
    ev.JOB_COMPLETED: _terminal("completed"),
    ev.JOB_FAILED: _terminal("failed"),
    ev.JOB_CANCELLED: _terminal("cancelled"),
    ev.SANDBOX_JOB_COMPLETED: _add_sandbox_name,
    ev.EXECUTOR_ATTEMPT_FAILED: _add_sandbox_name,
}


def _delivered(agent: AgentView, event: Event) -> AgentView:
    return replace(agent, mailbox_depth=agent.mailbox_depth + 1)


def _received(agent: AgentView, event: Event) -> AgentView:
    return replace(
        agent, inflight_message_id=event.payload["message_id"], mailbox_depth=agent.mailbox_depth - 1
    )


def _processed(agent: AgentView, event: Event) -> AgentView:
    return replace(
        agent,
        processed_messages=agent.processed_messages + 1,
        inflight_message_id=None,
        state=event.payload.get("state"),
        last_error=None,
    )


def _recovered(agent: AgentView, event: Event) -> AgentView:
    return replace(agent, mailbox_depth=event.payload["mailbox_depth"], inflight_message_id=None)


def _lease_acquired(agent: AgentView, event: Event) -> AgentView:
    p = event.payload
    return replace(agent, lease_id=p["lease_id"], lease_pool=p["pool"], lease_slots=p["slots"])


def _attempt_failed(agent: AgentView, event: Event) -> AgentView:
    p = event.payload
    return replace(
        agent,
        last_error=p.get("error"),
        sandbox_name=p.get("sandbox_name"),
        sandbox_exit_code=p.get("exit_code"),
        sandbox_pool=p.get("pool"),
        sandbox_at=event.timestamp,
    )


def _sandbox_completed(agent: AgentView, event: Event) -> AgentView:
    p = event.payload
    return replace(
        agent,
        runs=agent.runs + 1,
        sandbox_name=p.get("sandbox_name"),
        sandbox_exit_code=p.get("exit_code"),
        sandbox_pool=p.get("pool"),
        sandbox_at=event.timestamp,
    )


def _job_failed_agent(agent: AgentView, event: Event) -> AgentView:
    return replace(agent, last_error=event.payload.get("reason"))


_AGENT_EFFECTS: dict[str, Callable[[AgentView, Event], AgentView]] = {
    ev.MESSAGE_DELIVERED: _delivered,
    ev.AGENT_MESSAGE_RECEIVED: _received,
    ev.MESSAGE_PROCESSED: _processed,
    ev.AGENT_RECOVERED: _recovered,
    ev.EXECUTOR_LEASE_ACQUIRED: _lease_acquired,
    ev.EXECUTOR_ATTEMPT_FAILED: _attempt_failed,
    ev.SANDBOX_JOB_COMPLETED: _sandbox_completed,
    ev.JOB_FAILED: _job_failed_agent,
}


def _project_job(job: JobView, event: Event) -> JobView:
    effect = _JOB_EFFECTS.get(event.type)
    if effect is not None:
        job = effect(job, event)
    return replace(
        job,
        last_sequence=event.sequence,
        last_hash=event.hash,
        last_event=_last_event_label(event),
        last_timestamp=event.timestamp,
        updated_at=event.timestamp if event.type in ev.LIFECYCLE_TYPES else job.updated_at,
    )


def fold(events: Iterable[Event], state: JobProjection | None = None) -> JobProjection | None:
    """Fold job events (upcast to their current shape) into their projection; `state` is not modified."""
    registry = upcasting.current_registry()
    job = state.job if state is not None else None
    agents = dict(state.agents) if state is not None else {}
    for stored in events:
        event = registry.upcast(stored)
        if job is None:
            if event.type != ev.JOB_SUBMITTED:
                raise ValueError(f"stream {event.stream_id} does not start with job_submitted")
            first = _submitted(event)
            job, agents = first.job, dict(first.agents)
            continue
        job = _project_job(job, event)
        effect = _AGENT_EFFECTS.get(event.type)
        if effect is not None and event.agent_id in agents:
            agents[event.agent_id] = effect(agents[event.agent_id], event)
    return None if job is None else JobProjection(job, agents)


def project(state: JobProjection | None, event: Event) -> JobProjection:
    """Return the projection after one job event; `state` is None only before `job_submitted`."""
    result = fold((event,), state)
    assert result is not None
    return result
