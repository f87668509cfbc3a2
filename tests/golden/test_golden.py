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
from tests.unit.test_js_verifier import load_python_verifier, needs_node, run_node_tests

HERE = Path(__file__).resolve().parent
GOLDEN = sorted(HERE.glob("*.json"))


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
        "pause_message_resume", "cancelled", "crossing_pyjson_to_jcs",
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


def served(document: dict[str, Any]) -> list[dict[str, Any]]:
    """The records as a v1.1 server serves them: a v1.0 recording's events are pyjson-sha256."""
    return [{**r, "hash_alg": r.get("hash_alg", PYJSON)} for r in document["events"]]


def test_the_crossing_history_holds_both_algorithms_in_order() -> None:
    algorithms = [r["hash_alg"] for r in json.loads((HERE / "crossing_pyjson_to_jcs.json").read_text())["events"]]
    assert algorithms == sorted(algorithms, reverse=True) and set(algorithms) == {"pyjson-sha256", "jcs-sha256"}


def test_every_golden_history_verifies_with_the_stand_alone_python_verifier() -> None:
    verifier = load_python_verifier()
    for path in GOLDEN:
        records = served(json.loads(path.read_text()))
        assert verifier.verify(records) == (len(records), records[-1]["hash"], None), path.stem


@needs_node
def test_every_golden_history_verifies_with_the_javascript_verifier(tmp_path: Path) -> None:
    # None of the recorded v1.0 events holds a float or an astral key, so JCS reproduces their
    # hashes too: the console's verifier checks every event (none left in `legacy`).
    cases = []
    for path in GOLDEN:
        records = served(json.loads(path.read_text()))
        expect = {"ok": True, "count": len(records), "verified": len(records), "legacy": [], "head": records[-1]["hash"]}
        cases.append({"name": f"golden {path.stem}", "events": records, "expect": expect})
    finished = run_node_tests({"canonical": [], "chains": cases}, tmp_path)
    assert finished.returncode == 0 and "# fail 0" in finished.stdout, finished.stdout[-4000:]
    assert f"# pass {4 + len(cases)}" in finished.stdout  # 4: the file's own tests
