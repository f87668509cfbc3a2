"""The table of agent kinds covers every agent type the manifest accepts, and the runner every kind.

Adding an agent type to the manifest rules (`manifest.AGENT_TYPES`, its template matrix) without
its entry in `agent_kinds.KINDS` fails here; so does a new kind of step the runner cannot take.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from typing import get_args

from app.domain import agent_kinds
from app.domain.agent_kinds import KINDS, CallsModule, Decided, Kind, RunsCommand
from app.domain.manifest import AGENT_TYPE_ALIASES, AGENT_TYPES, ALLOWED_TEMPLATES, canonical_agent_type
from app.runtime.runner import JobRunner


def test_every_type_the_manifest_accepts_has_a_kind_and_no_other() -> None:
    assert set(KINDS) == set(AGENT_TYPES) == set(ALLOWED_TEMPLATES)
    assert {canonical_agent_type(alias) for alias in AGENT_TYPE_ALIASES} <= set(KINDS)


def test_every_kind_holds_its_step_function() -> None:
    functions = {Decided: "handle", RunsCommand: "finished", CallsModule: "returned"}
    assert set(functions) == set(get_args(Kind))
    for agent_type, kind in KINDS.items():
        assert callable(getattr(kind, functions[type(kind)])), agent_type


def test_the_kinds_of_today() -> None:
    decided = {t for t in KINDS if agent_kinds.is_decided(t)}
    assert decided == {"router", "aggregator", "sensor"}
    assert {t for t in KINDS if agent_kinds.runs_command(t)} == {"executor"}
    assert {t for t in KINDS if agent_kinds.calls_module(t)} == {"module"}


def test_the_runner_takes_a_step_of_every_kind() -> None:
    tree = ast.parse(textwrap.dedent(inspect.getsource(JobRunner._step)))
    cases = {node.cls.id for node in ast.walk(tree) if isinstance(node, ast.MatchClass) and isinstance(node.cls, ast.Name)}
    assert cases == {kind.__name__ for kind in get_args(Kind)}
