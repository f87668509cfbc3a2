"""Recorded histories of the SPEC §13 scenarios must replay, with the current code, into the
projections recorded with them: a change that breaks old histories fails here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from app.domain.canonical import PYJSON
from app.domain.events import Event
from app.domain.projection import fold
from app.domain.runtime_state import fold_runtime
from app.store.projector import agent_to_row, job_to_row
from tests.replay import chain_errors

GOLDEN = sorted(Path(__file__).resolve().parent.glob("*.json"))


def load_events(document: dict[str, Any]) -> list[Event]:
    """Events as an auditor receives them from the API."""
    return [
        Event(
            position=r["position"], stream_id=r["job_id"], sequence=r["sequence"], event_id=r["event_id"],
            type=r["type"], timestamp=r["timestamp"], job_id=r["job_id"], agent_id=r["agent_id"],
            payload=r["payload"], hash=r["hash"], hash_alg=r.get("hash_alg", PYJSON),  # v1.0 records have none
        )
        for r in document["events"]
    ]


def test_every_scenario_is_recorded() -> None:
    assert {p.stem for p in GOLDEN} >= {
        "research_flow", "prime_sweep_4_workers", "shell_python_chain", "shell_python_chain_fail_exit",
        "shell_python_chain_fail_pool", "shell_python_chain_fail_timeout", "streaming_peak_demo",
        "pause_message_resume", "cancelled",
    }


@pytest.mark.parametrize("path", GOLDEN, ids=[p.stem for p in GOLDEN])
def test_golden_history_replays_into_its_recorded_projection(path: Path) -> None:
    document = json.loads(path.read_text())
    events = load_events(document)
    assert chain_errors(events[0].stream_id, document["events"]) == []
    projection = fold(events)
    assert projection is not None
    assert job_to_row(projection.job) == document["projection"]["job"]
    assert [agent_to_row(a) for a in projection.agents.values()] == document["projection"]["agents"]
    runtime = fold_runtime(events[0].stream_id, events)
    assert runtime.terminal and runtime.status == projection.job.status
