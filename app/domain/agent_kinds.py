"""The table of agent types: what a step of each type the manifest accepts needs and means.

`KINDS` maps every canonical agent type (`manifest.AGENT_TYPES`) to its kind of step, and the
kind holds the pure function that says what the step means:

- `Decided`: decided from the agent's state and the message alone (router, aggregator, sensor,
  SPEC §7.2–§7.4). Nothing runs outside, so the runner may decide such a step ahead and chain it
  after the commit that delivers its message (`steps.chain_after`).
- `RunsCommand`: a command run in a leased sandbox (executor, §7.5); `finished` says what a
  successful run means. The lease and attempt events are the same for every such type
  (`executor_step`).
- `CallsModule`: a call into a trusted Python class (module, §7.7); `returned` turns what it
  returned into actions.

The runtime looks a type up here and does only the I/O its kind needs (`runtime/runner.py`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from app.domain import agents, executor_step, module_step
from app.domain.agents import Action, Failed, Handled
from app.domain.runtime_state import AgentRuntime


@dataclass(frozen=True)
class Decided:
    """A step decided from the agent's state and the message alone: `handle` may raise, failing the step."""

    handle: Callable[[AgentRuntime, Mapping[str, Any]], Handled]


@dataclass(frozen=True)
class RunsCommand:
    """A step that runs a command in a leased sandbox; `finished` is the step after a successful run."""

    finished: Callable[[executor_step.Finished], Handled | Failed]


@dataclass(frozen=True)
class CallsModule:
    """A step that calls a trusted Python class; `returned` turns its raw actions into actions."""

    returned: Callable[[str, list[Any]], list[Action]]


Kind = Decided | RunsCommand | CallsModule


def _route(agent: AgentRuntime, message: Mapping[str, Any]) -> Handled:
    return agents.handle_router(agent.agent_id, agent.config, agent.state, message)


def _aggregate(agent: AgentRuntime, message: Mapping[str, Any]) -> Handled:
    handled, _ = agents.handle_aggregator(agent.agent_id, agent.config, agent.aggregate, message)
    return handled


def _observe(agent: AgentRuntime, message: Mapping[str, Any]) -> Handled:
    return agents.handle_sensor(agent.agent_id, agent.config, agent.state, message)


KINDS: Final[Mapping[str, Kind]] = {
    "router": Decided(_route),
    "executor": RunsCommand(executor_step.finished),
    "aggregator": Decided(_aggregate),
    "sensor": Decided(_observe),
    "module": CallsModule(module_step.actions),
}


# The types whose steps run a command in a leased sandbox: what the manifest's executor rules
# (group 7), the projection's `executor_count` and the read model's executor status ask about.
COMMAND_TYPES: Final = frozenset(t for t, kind in KINDS.items() if isinstance(kind, RunsCommand))


def kind_of(agent_type: str) -> Kind:
    """The kind of a canonical agent type (KeyError for a type the manifest does not accept)."""
    return KINDS[agent_type]


def is_decided(agent_type: str) -> bool:
    """True when a step of the type is decided from state and message alone (it can be chained)."""
    return isinstance(KINDS.get(agent_type), Decided)


def runs_command(agent_type: str) -> bool:
    """True when a step of the type runs a command in a leased sandbox (an executor, §7.5)."""
    return agent_type in COMMAND_TYPES


def calls_module(agent_type: str) -> bool:
    """True when the type's agents are trusted Python classes loaded at bootstrap (§7.7)."""
    return isinstance(KINDS.get(agent_type), CallsModule)
