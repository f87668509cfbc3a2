"""What a module agent's step returned means (SPEC §7.7): its actions and its state, checked, no I/O.

The runtime (`runtime/module_steps.py`) calls the trusted class's `handle` and `snapshot`; this
module turns the raw actions into step actions, checks the state is JSON the event store can
write, and says how a step that raised fails the job.
"""

from __future__ import annotations

from typing import Any

from app.domain import events as ev
from app.domain.agents import Action, Complete, Emit, Failed, Record, raised_failure
from app.domain.canonical import canonical_json, is_out_of_range, require_string_keys
from app.domain.events import NewEvent

OPTION_KEYS = ("class", "correlation_id", "content_type", "content_encoding", "headers", "artifacts", "stream")


class ModuleAgentError(Exception):
    """Loading or running a module agent failed; the message is the spec's sentence."""


def actions(agent_id: str, raw_actions: list[Any]) -> list[Action]:
    """The step's actions from what `handle` returned; raise ModuleAgentError on an unknown or reserved one."""
    require_string_keys(raw_actions)  # see canonical.require_string_keys
    return [_action(agent_id, raw) for raw in raw_actions]


def _action(agent_id: str, raw: Any) -> Action:
    kind = raw.get("action") if isinstance(raw, dict) else None
    if kind in ("emit", "emit_to"):
        options = {k: raw[k] for k in OPTION_KEYS if k in raw}
        to = str(raw.get("to")) if kind == "emit_to" else None
        return Emit(str(raw.get("type")), raw.get("body"), to, options)
    if kind == "event":
        type_ = str(raw.get("type"))
        if type_ in ev.RESERVED_TYPES:
            raise ModuleAgentError(f'agent {agent_id} cannot emit reserved event type "{type_}"')
        payload = raw.get("payload")
        return Record(NewEvent(type_, payload if isinstance(payload, dict) else {}, agent_id))
    if kind == "complete_job":
        return Complete(raw.get("result"))
    raise ModuleAgentError(f'agent {agent_id} returned an unknown action "{kind}"')


def checked_state(agent_id: str, value: Any) -> Any:
    """The snapshot to persist, once it is JSON the event store can write; else ModuleAgentError."""
    try:
        require_string_keys(value)
        canonical_json(value)  # exactly what the event store will have to write
    except (TypeError, ValueError, RecursionError) as exc:
        if is_out_of_range(exc):
            raise  # SPEC C.1.2: `agent <id> raised ValueError: integer out of range: <n>`
        raise ModuleAgentError(f"agent {agent_id} returned a state that is not JSON-serialisable") from None
    return value


def failure(agent_id: str, exc: Exception) -> Failed:
    """How a module step that raised fails the job: a ModuleAgentError is its own sentence (§7.7)."""
    if isinstance(exc, ModuleAgentError):
        return Failed(str(exc), {"error": str(exc)})
    return raised_failure(agent_id, exc)
