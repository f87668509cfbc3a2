"""A step's actions and outcomes, the builtin agents (SPEC §7.2–§7.4), actions into events (§6.4).

A step of any agent type ends `Handled` (its actions and the state to persist) or `Failed`.
The router, aggregator and sensor handlers are pure: they take the agent's config, state and
the incoming message and return the step. `materialize` turns actions into
`message_delivered`, `dead_letter` and custom events; message ids and the timestamp are passed in.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from app.domain import events as ev
from app.domain.events import NewEvent
from app.domain.messages import build_outgoing

AGGREGATOR_HEADERS = {"schema_ref": "com.mirrorneuron.aggregator.result", "schema_version": "1.0.0"}
RESULT_OPTIONS = {"class": "event", "content_type": "application/json", "content_encoding": "identity"}


@dataclass(frozen=True)
class Emit:
    """Send a message along matching edges, or directly to `to`."""

    type: str
    body: Any
    to: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Record:
    """Append an event of the step (builtin or custom) at this point of the step."""

    event: NewEvent


@dataclass(frozen=True)
class Complete:
    """Complete the job with `output` (only the step's first Complete counts)."""

    output: Any


Action = Emit | Record | Complete


@dataclass(frozen=True)
class Completion:
    """The result of a step's first complete action."""

    agent_id: str
    output: Any


@dataclass(frozen=True)
class Handled:
    """What one step of an agent did: its actions and the state to persist."""

    actions: tuple[Action, ...]
    state: Any


@dataclass(frozen=True)
class Failed:
    """A step that fails the job: the error sentence, `result.details`, and the step's final events."""

    error: str
    details: dict[str, Any]
    events: tuple[NewEvent, ...] = ()


def raised(agent_id: str, exc: BaseException) -> str:
    """The sentence of a step whose code raised (SPEC §7.1): `agent <id> raised <Type>: <message>`."""
    return f"agent {agent_id} raised {type(exc).__name__}: {exc}"


def raised_failure(agent_id: str, exc: BaseException, *events: NewEvent) -> Failed:
    """A step failed because its code raised, with `events` recorded before `job_failed`."""
    error = raised(agent_id, exc)
    return Failed(error, {"error": error}, events)


def _payload(message: Mapping[str, Any]) -> Any:
    body = message.get("body")
    return {} if body is None else body


def _message_type(message: Mapping[str, Any]) -> str:
    return str(message["envelope"]["type"])


def handle_router(agent_id: str, config: Mapping[str, Any], state: Any, message: Mapping[str, Any]) -> Handled:
    """Forward the body with `emit_type` (default: the incoming type), keeping the envelope."""
    emit_type = config.get("emit_type")
    kind = emit_type if isinstance(emit_type, str) and emit_type else _message_type(message)
    forwarded = (state or {}).get("forwarded", 0) + 1
    return Handled((Emit(kind, message.get("body")),), {"forwarded": forwarded})


@dataclass(frozen=True)
class AggregatorState:
    """Accepted payloads and seen sender ids, rebuilt from `aggregator_received` events."""

    messages: tuple[Any, ...] = ()
    seen: frozenset[str] = frozenset()


def aggregator_complete_job(config: Mapping[str, Any]) -> bool:
    """The effective `complete_job` of an aggregator (SPEC §7.2)."""
    if "complete_job" in config:
        return bool(config["complete_job"])
    return "output_message_type" not in config


def _positive_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def handle_aggregator(
    agent_id: str, config: Mapping[str, Any], state: AggregatorState, message: Mapping[str, Any]
) -> tuple[Handled, AggregatorState]:
    """Accept one payload (or ignore a duplicate sender) and complete/emit when the rule fires."""
    payload = _payload(message)
    message_id = message["envelope"]["message_id"]
    sender = payload.get("agent_id") if isinstance(payload, dict) else None
    sender = sender if isinstance(sender, str) else None
    if sender is not None and sender in state.seen:
        ignored = NewEvent(ev.AGGREGATOR_DUPLICATE_IGNORED, {"agent_id": sender, "message_id": message_id}, agent_id)
        return Handled((Record(ignored),), {"count": len(state.messages)}), state
    accepted = AggregatorState(
        (*state.messages, payload), state.seen | ({sender} if sender is not None else set())
    )
    count = len(accepted.messages)
    received = NewEvent(
        ev.AGGREGATOR_RECEIVED, {"count": count, "message_id": message_id, "agent_id": sender}, agent_id
    )
    actions: list[Action] = [Record(received)]
    threshold = _positive_int(config.get("complete_after"))
    if config.get("complete_on_message") is True or (threshold is not None and count >= threshold):
        result = {"messages": list(accepted.messages), "count": count, "last_message": payload}
        output_type = config.get("output_message_type")
        if isinstance(output_type, str) and output_type:
            actions.append(Emit(output_type, result, options={**RESULT_OPTIONS, "headers": AGGREGATOR_HEADERS}))
        if aggregator_complete_job(config):
            actions.append(Complete(result))
    return Handled(tuple(actions), {"count": count}), accepted


def handle_sensor(agent_id: str, config: Mapping[str, Any], state: Any, message: Mapping[str, Any]) -> Handled:
    """Count the observation, pass the payload on, complete when configured (SPEC §7.4)."""
    observations = (state or {}).get("observations", 0) + 1
    payload = _payload(message)
    output_type = config.get("output_message_type", "sensor_ready")
    threshold = config.get("complete_after", 1)
    actions: list[Action] = [
        Record(NewEvent(ev.SENSOR_OBSERVED, {"count": observations}, agent_id)),
        Emit(str(output_type), payload, options={"class": "event"}),
    ]
    is_number = isinstance(threshold, int | float) and not isinstance(threshold, bool)
    if is_number and observations >= threshold and config.get("complete_job", False) is True:
        actions.append(Complete({"count": observations, "last_message": payload}))
    return Handled(tuple(actions), {"observations": observations})


@dataclass(frozen=True)
class Topology:
    """The graph's node ids and each node's outbound edges, in manifest order."""

    node_ids: frozenset[str]
    outbound: Mapping[str, tuple[Mapping[str, Any], ...]]

    @classmethod
    def of(cls, manifest: Mapping[str, Any]) -> Topology:
        """Index a normalised manifest."""
        outbound: dict[str, list[Mapping[str, Any]]] = {}
        for edge in manifest["edges"]:
            outbound.setdefault(edge["from_node"], []).append(edge)
        return cls(
            frozenset(n["node_id"] for n in manifest["nodes"]),
            {k: tuple(v) for k, v in outbound.items()},
        )


@dataclass(frozen=True)
class StepContext:
    """Everything `materialize` needs besides the actions."""

    job_id: str
    agent_id: str
    incoming: Mapping[str, Any]
    topology: Topology
    timestamp: str
    new_id: Callable[[], str]


def _delivery(ctx: StepContext, emit: Emit, to: str, route: str, edge_id: Any) -> NewEvent:
    message = build_outgoing(
        dict(ctx.incoming),
        message_id=ctx.new_id(),
        job_id=ctx.job_id,
        sender=ctx.agent_id,
        to=to,
        type_=emit.type,
        body=emit.body,
        timestamp=ctx.timestamp,
        options=dict(emit.options),
    )
    if route == "dead_letter":
        return NewEvent(ev.DEAD_LETTER, {"message": message, "reason": f"unknown agent {to}"}, to)
    return NewEvent(ev.MESSAGE_DELIVERED, {"message": message, "route": route, "edge_id": edge_id}, to)


def _emit_events(ctx: StepContext, emit: Emit) -> list[NewEvent]:
    if emit.to is not None:
        route = "direct" if emit.to in ctx.topology.node_ids else "dead_letter"
        return [_delivery(ctx, emit, emit.to, route, None)]
    return [
        _delivery(ctx, emit, edge["to_node"], "edge", edge.get("edge_id"))
        for edge in ctx.topology.outbound.get(ctx.agent_id, ())
        if edge["message_type"] in (emit.type, "*")
    ]


def materialize(ctx: StepContext, actions: Sequence[Action]) -> tuple[list[NewEvent], Completion | None]:
    """The step's events in the order the actions were performed, and its completion if any."""
    produced: list[NewEvent] = []
    completion: Completion | None = None
    for action in actions:
        match action:
            case Record():
                produced.append(action.event)
            case Emit():
                produced.extend(_emit_events(ctx, action))
            case Complete():
                if completion is None:
                    completion = Completion(ctx.agent_id, action.output)
    return produced, completion
