"""Schema evolution: a v2 of one event type replays a stored v1 history through an upcaster."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from app.domain import events as ev
from app.domain import projection, upcasting
from app.domain.upcasting import Upcaster, UpcasterRegistry
from tests.golden.test_golden import load_events

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "research_flow.json"

# Version 2 of job_scheduled nests the node: {"owner": {"node": ...}} instead of {"node": ...}.
V2 = Upcaster(
    type=ev.JOB_SCHEDULED,
    to_version=2,
    applies=lambda p: "node" in p and "owner" not in p,
    upgrade=lambda p: {"owner": {"node": p["node"]}},
)


def _v2_scheduled(job: projection.JobView, event: ev.Event) -> projection.JobView:
    node = event.payload["owner"]["node"]
    return replace(job, node=node, nodes=tuple(sorted({*job.nodes, node})))


@pytest.fixture
def v1_history() -> list[ev.Event]:
    return load_events(json.loads(GOLDEN.read_text()))


@pytest.fixture
def v2_code(monkeypatch: pytest.MonkeyPatch) -> None:
    """The code after the change: the projection reads the v2 shape only."""
    monkeypatch.setitem(projection._JOB_EFFECTS, ev.JOB_SCHEDULED, _v2_scheduled)


def test_v2_code_cannot_read_a_v1_history_without_the_upcaster(v1_history: list[ev.Event], v2_code: None) -> None:
    with pytest.raises(KeyError):
        projection.fold(v1_history)


def test_upcaster_replays_a_stored_v1_history(
    v1_history: list[ev.Event], v2_code: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(upcasting, "REGISTRY", UpcasterRegistry([V2]))
    expected: dict[str, Any] = json.loads(GOLDEN.read_text())["projection"]["job"]
    replayed = projection.fold(v1_history)
    assert replayed is not None
    assert replayed.job.node == expected["node"] == "golden-node"
    assert replayed.job.last_hash == expected["last_hash"]
    # the stored payloads are untouched: hashes are over what was stored
    scheduled = next(e for e in v1_history if e.type == ev.JOB_SCHEDULED)
    assert scheduled.payload == {"node": "golden-node"}


def test_registry_versions_and_idempotence() -> None:
    registry = UpcasterRegistry([V2])
    assert registry.current_version(ev.JOB_SCHEDULED) == 2
    assert registry.current_version(ev.JOB_QUEUED) == 1
    event = ev.Event(1, "j", 1, "e", ev.JOB_SCHEDULED, "t", "j", None, {"node": "n"}, "h")
    once = registry.upcast(event)
    assert once.payload == {"owner": {"node": "n"}}
    assert registry.upcast(once) is once  # a current payload is left alone
    assert upcasting.REGISTRY.current_version(ev.JOB_SCHEDULED) == 1  # production: nothing changed yet
