"""Module and sensor agents, direct emits and dead letters, end to end (SPEC §7.4, §7.7, §6.4)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.runtime.conftest import Harness

COUNTER = '''
class Counter:
    def init(self, config, context):
        return {"seen": 0, "node": context["node"]}

    def handle(self, state, message, context):
        state = {**state, "seen": state["seen"] + 1}
        kind = (message.get("body") or {}).get("kind")
        actions = [{"action": "event", "type": "counted", "payload": {"seen": state["seen"]}}]
        if kind == "direct":
            actions.append({"action": "emit_to", "to": "sink", "type": "direct_hit", "body": {"n": state["seen"]}})
        if kind == "ghost":
            actions.append({"action": "emit_to", "to": "ghost", "type": "lost", "body": {}})
        actions.append({"action": "emit", "type": "counted", "body": {"seen": state["seen"]}, "headers": {"h": "1"}})
        if state["seen"] >= context["config"].get("complete_at", 3):
            actions.append({"action": "complete_job", "result": {"seen": state["seen"]}})
            actions.append({"action": "complete_job", "result": "ignored: the first complete action wins"})
        return state, actions

    def snapshot(self, state):
        return {"seen": state["seen"]}

    def restore(self, snapshot, context):
        return {"seen": snapshot["seen"], "node": context["node"]}
'''


@pytest.fixture
def settings_overrides(tmp_path: Path) -> dict[str, Any]:
    bundle = tmp_path / "bundles" / "module_demo"
    package = bundle / "payloads" / "mn_demo_agents_pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "counter.py").write_text(COUNTER)
    manifest = {
        "manifest_version": "1", "graph_id": "module_demo", "entrypoints": ["counter"],
        "initial_inputs": {"counter": [{"kind": "direct"}, {"kind": "ghost"}, {}]},
        "nodes": [
            {"node_id": "counter", "agent_type": "module", "config": {"module": "mn_demo_agents_pkg.counter:Counter"}},
            {"node_id": "watch", "agent_type": "sensor", "config": {"output_message_type": "seen"}},
            {"node_id": "sink", "agent_type": "aggregator", "config": {}},
        ],
        "edges": [{"edge_id": "c2w", "from_node": "counter", "to_node": "watch", "message_type": "counted"}],
    }
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    return {"bundles_dir": tmp_path / "bundles"}


async def test_module_agent_from_bundle_payloads(harness: Harness) -> None:
    job_id = await harness.submit({"bundle_id": "module_demo"})
    details = await harness.wait_status(job_id)
    assert details["job"]["result"] == {"agent_id": "counter", "output": {"seen": 3}}
    events = await harness.events(job_id)
    counter = [e for e in events if e["agent_id"] == "counter"]
    assert [e["payload"]["seen"] for e in counter if e["type"] == "counted"] == [1, 2, 3]
    assert [e["payload"]["state"] for e in counter if e["type"] == "message_processed"] == [
        {"snapshot": {"seen": 1}}, {"snapshot": {"seen": 2}}, {"snapshot": {"seen": 3}}
    ]
    direct = [e for e in events if e["type"] == "message_delivered" and e["payload"]["route"] == "direct"]
    assert len(direct) == 1 and direct[0]["agent_id"] == "sink"
    assert direct[0]["payload"]["message"]["envelope"]["type"] == "direct_hit"
    dead = [e for e in events if e["type"] == "dead_letter"]
    assert len(dead) == 1 and dead[0]["agent_id"] == "ghost" and dead[0]["payload"]["reason"] == "unknown agent ghost"
    edge = [e for e in events if e["type"] == "message_delivered" and e["payload"]["route"] == "edge"]
    assert {e["payload"]["edge_id"] for e in edge} == {"c2w"}
    assert edge[0]["payload"]["message"]["headers"]["h"] == "1"
    assert edge[0]["payload"]["message"]["envelope"]["causation_id"]
    observed = [e["payload"]["count"] for e in events if e["type"] == "sensor_observed"]
    assert observed == sorted(observed) and observed[0] == 1
    step = ["agent_message_received", "counted", "message_processed"]
    assert [e["type"] for e in counter] == ["message_delivered"] * 3 + step * 3 + ["job_completed"]
    await harness.audit(job_id)


def _raw(config: dict[str, Any]) -> dict[str, Any]:
    return {
        "manifest_version": "1", "graph_id": "module_errors", "entrypoints": ["m"],
        "initial_inputs": {"m": [{"x": 1}]},
        "nodes": [{"node_id": "m", "agent_type": "module", "config": config}],
    }


M = "tests.runtime.module_agents"


@pytest.mark.parametrize(
    ("config", "error", "bootstrap"),
    [
        ({"module": f"{M}:Broken"}, "agent m raised ValueError: boom", False),
        ({"module": f"{M}:BadAction"}, 'agent m returned an unknown action "explode"', False),
        ({"module": f"{M}:Reserved"}, 'agent m cannot emit reserved event type "job_completed"', False),
        ({"module": f"{M}:NotSerialisable"}, "agent m returned a state that is not JSON-serialisable", False),
        ({}, "module agent requires config.module", True),
        ({"module": f"{M}:Nope"}, f"module agent {M}:Nope is not available", True),
        ({"module": f"{M}.NotAgent"}, f'invalid module agent "{M}.NotAgent"', True),
        ({"module": f"{M}:Broken", "module_source": "x"}, "module_source requires payloads path in runtime context", True),
        ({"module": f"{M}:InitFails"}, "agent m raised KeyError: 'api_key'", True),
        (
            {"module": "MirrorNeuron.Examples.Counter", "module_source": "x"},
            "module agent MirrorNeuron.Examples.Counter is an Elixir module; this runtime runs Python module "
            "agents (SPEC §7.7)",
            True,
        ),
        (
            {"module": "Elixir.Counter"},
            "module agent Elixir.Counter is an Elixir module; this runtime runs Python module agents (SPEC §7.7)",
            True,
        ),
        ({"module": f"{M}:EmitsASet"}, "agent m raised TypeError: Object of type set is not JSON serializable", False),
        # SPEC C.1.2: an int no double equals, in an emitted body or in the state, fails the step.
        ({"module": f"{M}:EmitsAHugeInteger"}, f"agent m raised ValueError: integer out of range: {2**53 + 1}", False),
        ({"module": f"{M}:KeepsAHugeInteger"}, f"agent m raised ValueError: integer out of range: {-(2**64) - 1}", False),
        # json.dumps writes {10:, 9:} as "9" first: no canonical reader could reproduce that text.
        ({"module": f"{M}:EmitsIntegerKeys"}, "agent m raised TypeError: keys must be str, not int", False),
    ],
)
async def test_module_agent_failures(harness: Harness, config: dict[str, Any], error: str, bootstrap: bool) -> None:
    job_id = await harness.submit(_raw(config))
    details = await harness.wait_status(job_id)
    assert details["job"]["status"] == "failed"
    assert details["job"]["result"]["error"] == error
    assert details["job"]["result"]["agent_id"] == "m"
    types = [e["type"] for e in await harness.events(job_id)]
    if bootstrap:
        assert types == ["job_submitted", "job_queued", "job_scheduled", "job_failed"]
    else:
        assert types[-2:] == ["agent_message_received", "job_failed"]
        assert details["job"]["result"]["details"] == {"error": error}


async def test_async_module_handle_from_the_server_path(harness: Harness) -> None:
    job_id = await harness.submit(_raw({"module": f"{M}:AsyncEcho"}))
    details = await harness.wait_status(job_id)
    assert details["job"]["result"] == {"agent_id": "m", "output": {"echo": {"x": 1}, "node": "node-a"}}


async def test_executor_stdout_with_an_out_of_range_number_is_plain_data(harness: Harness) -> None:
    """`1e400` would become an infinity that no event can hold: the stdout is not structured."""
    manifest = {
        "manifest_version": "1", "graph_id": "inf_stdout", "entrypoints": ["e"],
        "nodes": [{"node_id": "e", "agent_type": "executor",
                   "config": {"command": "echo '{\"next_state\": {\"x\": 1e400}}'", "complete_job": True}}],
    }
    job_id = await harness.submit(manifest)
    details = await harness.wait_status(job_id)
    assert details["job"]["status"] == "completed", details["job"]["result"]
    assert details["job"]["result"]["output"]["sandbox"]["stdout"].strip() == '{"next_state": {"x": 1e400}}'
    types = [e["type"] for e in await harness.events(job_id)]
    assert types.count("agent_message_received") == 1


async def test_a_module_result_is_normalised_to_its_stored_text(harness: Harness) -> None:
    # SPEC C.1.1: 2**60 is exactly a double and 1.0 is 1 once sealed; the job's result is that value.
    job_id = await harness.submit(_raw({"module": f"{M}:CompletesWithAnExactLargeInteger"}))
    details = await harness.wait_status(job_id)
    assert details["job"]["status"] == "completed", details["job"]["result"]
    assert details["job"]["result"]["output"] == {"n": 1152921504606847000, "ratio": 1}


async def test_executor_stdout_with_an_integer_no_double_equals_fails_the_step(harness: Harness) -> None:
    manifest = {
        "manifest_version": "1", "graph_id": "huge_stdout", "entrypoints": ["e"],
        "nodes": [{"node_id": "e", "agent_type": "executor",
                   "config": {"command": "echo '{\"next_state\": {\"n\": 9007199254740993}}'", "complete_job": True}}],
    }
    job_id = await harness.submit(manifest)
    details = await harness.wait_status(job_id)
    assert details["job"]["status"] == "failed"
    error = "agent e raised ValueError: integer out of range: 9007199254740993"
    assert details["job"]["result"]["error"] == error
    types = [e["type"] for e in await harness.events(job_id)]
    assert types[:3] == ["job_submitted", "job_queued", "job_scheduled"]
    assert types[-3:] == ["executor_lease_acquired", "executor_lease_released", "job_failed"]
