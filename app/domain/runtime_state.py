"""The runtime's view of a job, folded from its events alone (SPEC §8.3).

Every agent's mailbox (delivered minus processed, in delivery order), whether its oldest
message is in flight, its persisted state and, for aggregators, the accepted payloads. A node
that takes a job over folds the log into this and continues; nothing else is needed.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from app.domain import events as ev
from app.domain import upcasting
from app.domain.agents import AggregatorState
from app.domain.events import Event


@dataclass
class AgentRuntime:
    """One agent as the log describes it."""

    agent_id: str
    spec: dict[str, Any]
    queue: deque[dict[str, Any]] = field(default_factory=deque)
    head_received: bool = False
    processed: int = 0
    state: Any = None
    aggregate: AggregatorState = field(default_factory=AggregatorState)

    @property
    def agent_type(self) -> str:
        """Canonical agent type."""
        return str(self.spec["agent_type"])

    @property
    def config(self) -> dict[str, Any]:
        """The node's config object."""
        config = self.spec.get("config")
        return config if isinstance(config, dict) else {}

    @property
    def inflight_message_id(self) -> str | None:
        """The oldest queued message if its handling started, else None."""
        return self.queue[0]["envelope"]["message_id"] if self.head_received and self.queue else None


@dataclass
class JobRuntime:
    """A whole job as the log describes it; `apply` must see every event in sequence order."""

    job_id: str
    manifest: dict[str, Any] = field(default_factory=dict)
    bundle: dict[str, Any] | None = None
    status: str = "pending"
    node: str | None = None
    last_sequence: int = 0
    recovery_count: int = 0
    agents: dict[str, AgentRuntime] = field(default_factory=dict)

    @property
    def terminal(self) -> bool:
        """True once a terminal event was applied."""
        return self.status in ev.TERMINAL_STATUSES

    def apply(self, event: Event) -> None:
        """Advance by one event (which must be the next in sequence)."""
        if event.sequence != self.last_sequence + 1:
            raise ValueError(f"{self.job_id}: expected sequence {self.last_sequence + 1}, got {event.sequence}")
        self.last_sequence = event.sequence
        handler = _HANDLERS.get(event.type)
        if handler is not None:
            handler(self, upcasting.current_registry().upcast(event))

    def agent(self, event: Event) -> AgentRuntime | None:
        """The event's agent, if it is a graph node of this job."""
        return self.agents.get(event.agent_id) if event.agent_id is not None else None


def fold_runtime(job_id: str, events: Iterable[Event]) -> JobRuntime:
    """Fold a job's events from the start."""
    job = JobRuntime(job_id)
    for event in events:
        job.apply(event)
    return job


def _submitted(job: JobRuntime, event: Event) -> None:
    job.manifest = event.payload["manifest"]
    job.bundle = event.payload.get("bundle")
    job.agents = {n["node_id"]: AgentRuntime(n["node_id"], n) for n in job.manifest["nodes"]}


def _status(status: str) -> Any:
    def apply(job: JobRuntime, event: Event) -> None:
        job.status = status

    return apply


def _scheduled(job: JobRuntime, event: Event) -> None:
    job.node = event.payload["node"]


def _recovery(job: JobRuntime, event: Event) -> None:
    job.node = event.payload["node"]
    job.recovery_count += 1


def _delivered(job: JobRuntime, event: Event) -> None:
    agent = job.agent(event)
    if agent is not None:
        agent.queue.append(event.payload["message"])


def _received(job: JobRuntime, event: Event) -> None:
    agent = job.agent(event)
    if agent is not None:
        agent.head_received = True


def _processed(job: JobRuntime, event: Event) -> None:
    agent = job.agent(event)
    if agent is None:
        return
    message_id = event.payload["message_id"]
    for index, message in enumerate(agent.queue):
        if message["envelope"]["message_id"] == message_id:
            del agent.queue[index]
            break
    agent.processed += 1
    agent.state = event.payload.get("state")
    agent.head_received = False


def _aggregated(job: JobRuntime, event: Event) -> None:
    agent = job.agent(event)
    if agent is None:
        return
    body = next(
        (m.get("body") for m in agent.queue if m["envelope"]["message_id"] == event.payload["message_id"]),
        None,
    )
    sender = event.payload.get("agent_id")
    agent.aggregate = AggregatorState(
        (*agent.aggregate.messages, {} if body is None else body),
        agent.aggregate.seen | ({sender} if isinstance(sender, str) else set()),
    )


def _recovered(job: JobRuntime, event: Event) -> None:
    agent = job.agent(event)
    if agent is not None:
        agent.head_received = False


_HANDLERS = {
    ev.JOB_SUBMITTED: _submitted,
    ev.JOB_QUEUED: _status("queued"),
    ev.JOB_SCHEDULED: _scheduled,
    ev.JOB_RUNNING: _status("running"),
    ev.JOB_PAUSED: _status("paused"),
    ev.JOB_RESUMED: _status("running"),
    ev.JOB_RECOVERY_STARTED: _recovery,
    ev.JOB_COMPLETED: _status("completed"),
    ev.JOB_FAILED: _status("failed"),
    ev.JOB_CANCELLED: _status("cancelled"),
    ev.MESSAGE_DELIVERED: _delivered,
    ev.AGENT_MESSAGE_RECEIVED: _received,
    ev.MESSAGE_PROCESSED: _processed,
    ev.AGGREGATOR_RECEIVED: _aggregated,
    ev.AGENT_RECOVERED: _recovered,
}
