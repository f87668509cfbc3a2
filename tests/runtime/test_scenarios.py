"""SPEC §13 acceptance scenarios, end to end through the HTTP API, on SQLite and Postgres."""

from __future__ import annotations

import asyncio
import copy
import json
import os
import signal
from typing import Any

import pytest

from tests.runtime.conftest import Harness, load_manifest

P = {"topic": "electric vehicle charging adoption in New England", "text": "Collect a short research summary."}


def types(events: list[dict[str, Any]]) -> list[str]:
    return [f"{e['type']}({e['agent_id']})" if e["agent_id"] else e["type"] for e in events]


# ---------------------------------------------------------------- 13.1


async def test_research_flow(harness: Harness) -> None:
    job_id = await harness.submit(load_manifest("research_flow.json"))
    details = await harness.wait_status(job_id, timeout=5)
    assert details["job"]["status"] == "completed"
    assert details["job"]["result"] == {
        "agent_id": "reviewer",
        "output": {"messages": [P], "count": 1, "last_message": P},
    }
    events = await harness.events(job_id)
    assert types(events) == [
        "job_submitted", "job_queued", "job_scheduled", "message_delivered(ingress)", "job_running",
        "agent_message_received(ingress)", "message_delivered(retriever)", "message_processed(ingress)",
        "agent_message_received(retriever)", "message_delivered(reviewer)", "message_processed(retriever)",
        "agent_message_received(reviewer)", "aggregator_received(reviewer)", "message_processed(reviewer)",
        "job_completed(reviewer)",
    ]
    assert [e["sequence"] for e in events] == list(range(1, 16))
    seed = events[3]["payload"]
    assert seed["route"] == "seed" and seed["message"]["envelope"]["type"] == "init"
    assert events[6]["payload"]["message"]["envelope"]["type"] == "research_request"
    assert events[12]["payload"]["count"] == 1
    await harness.audit(job_id)


async def test_research_flow_entrypoints_derived_from_role(harness: Harness) -> None:
    manifest = load_manifest("research_flow.json")
    del manifest["entrypoints"]
    details = await harness.wait_status(await harness.submit(manifest))
    assert details["job"]["result"]["output"]["count"] == 1
    assert details["job"]["root_agent_ids"] == ["ingress"]


async def test_dispatcher_fans_out_to_four_routers(harness: Harness) -> None:
    workers = [f"worker_{i}" for i in range(1, 5)]
    manifest = {
        "manifest_version": "1.0",
        "graph_id": "fanout_routers",
        "entrypoints": ["dispatcher"],
        "initial_inputs": {"dispatcher": [{"n": 1}]},
        "nodes": [
            {"node_id": "dispatcher", "agent_type": "router", "config": {"emit_type": "fanout"}},
            *({"node_id": w, "agent_type": "router"} for w in workers),
            {"node_id": "sink", "agent_type": "aggregator", "config": {"complete_after": 4}},
        ],
        "edges": [
            *({"from_node": "dispatcher", "to_node": w, "message_type": "fanout"} for w in workers),
            *({"from_node": w, "to_node": "sink", "message_type": "*"} for w in workers),
        ],
    }
    details = await harness.wait_status(await harness.submit(manifest))
    assert details["job"]["status"] == "completed"
    assert details["job"]["result"]["output"]["count"] == 4
    await harness.audit(details["job"]["job_id"])


# ---------------------------------------------------------------- 13.2


def _relative_order(events: list[dict[str, Any]], agent: str) -> list[str]:
    return [
        e["type"]
        for e in events
        if e["agent_id"] == agent or (e["type"] == "message_delivered" and e["payload"]["message"]["envelope"]["from"] == agent)
    ]


async def test_prime_sweep(harness: Harness) -> None:
    job_id = await harness.submit({"bundle_id": "prime_sweep_4_workers"})
    details = await harness.wait_status(job_id)
    job = details["job"]
    assert job["status"] == "completed", job["result"]
    output = job["result"]["output"]
    assert job["result"]["agent_id"] == "summarizer"
    assert (output["prime_count"], output["checked_numbers"], output["worker_count"]) == (32, 400, 4)
    assert (output["range_start"], output["range_end"]) == (1000003, 1000402)
    assert [c["prime_count"] for c in output["chunks"]] == [6, 10, 8, 8]
    assert output["first_25_primes"][:5] == [1000003, 1000033, 1000037, 1000039, 1000081]
    assert output["last_25_primes"][-3:] == [1000381, 1000393, 1000397]
    events = await harness.events(job_id)
    assert len(events) == 59
    for k in range(1, 5):
        worker = f"prime_worker_000{k}"
        order = _relative_order(events, worker)
        assert order == [
            "message_delivered", "agent_message_received", "executor_lease_requested", "executor_lease_acquired",
            "executor_lease_released", "sandbox_job_completed", "message_delivered", "message_processed",
        ], (worker, order)
    counts = [e["payload"]["count"] for e in events if e["type"] == "aggregator_received"]
    assert counts == [1, 2, 3, 4]
    to_summarizer = [e for e in events if e["type"] == "message_delivered" and e["agent_id"] == "summarizer"]
    assert len(to_summarizer) == 1
    assert to_summarizer[0]["payload"]["message"]["envelope"]["type"] == "prime_chunk_collection"
    fourth = next(e for e in events if e["type"] == "aggregator_received" and e["payload"]["count"] == 4)
    assert to_summarizer[0]["sequence"] > fourth["sequence"]
    assert events[-1]["type"] == "job_completed" and events[-1]["agent_id"] == "summarizer"
    assert not {"job_failed", "dead_letter", "executor_attempt_failed"} & {e["type"] for e in events}
    assert details["summary"]["executor_count"] == 5
    assert len(details["sandboxes"]) == 5
    assert {(s["exit_code"], s["pool"]) for s in details["sandboxes"]} == {(0, "default")}
    await harness.audit(job_id)


@pytest.mark.parametrize("settings_overrides", [{"executor_max_concurrency": "2"}])
async def test_prime_sweep_with_two_slots_queues(harness: Harness) -> None:
    job_id = await harness.submit({"bundle_id": "prime_sweep_4_workers"})
    saw_queue = False
    while True:
        summary = (await harness.client.get("/api/v1/system/summary")).json()
        pool = next(n for n in summary["nodes"] if n["self?"])["executor_pools"]["default"]
        assert pool["capacity"] == 2
        saw_queue = saw_queue or pool["queued"] > 0
        status = (await harness.details(job_id))["job"]["status"]
        if status in ("completed", "failed", "cancelled"):
            break
        await asyncio.sleep(0.02)
    details = await harness.details(job_id)
    assert details["job"]["result"]["output"]["prime_count"] == 32
    events = await harness.events(job_id)
    assert any(e["payload"]["queue_wait_ms"] > 0 for e in events if e["type"] == "executor_lease_acquired")
    assert saw_queue


# ---------------------------------------------------------------- 13.3


async def test_shell_python_chain(harness: Harness) -> None:
    job_id = await harness.submit({"bundle_id": "shell_python_chain_v1"})
    details = await harness.wait_status(job_id)
    result = details["job"]["result"]
    assert result["agent_id"] == "result_sink"
    last = result["output"]["last_message"]
    assert last["agent_id"] == "python_worker"
    assert json.loads(last["sandbox"]["stdout"])["headline"] == "quick-signal: 7 words, 61 chars"
    assert last["input"]["agent_id"] == "shell_worker"
    assert last["input"]["input"] == {
        "request_id": "demo-quick-001", "label": "quick-signal",
        "text": "Agents orchestrate workers while sandboxes isolate execution.",
    }
    executor_steps = [
        "agent_message_received", "executor_lease_requested", "executor_lease_acquired",
        "executor_lease_released", "sandbox_job_completed",
    ]
    events = await harness.events(job_id)
    assert types(events) == [
        "job_submitted", "job_queued", "job_scheduled", "message_delivered(shell_worker)", "job_running",
        *(f"{t}(shell_worker)" for t in executor_steps), "message_delivered(python_worker)", "message_processed(shell_worker)",
        *(f"{t}(python_worker)" for t in executor_steps), "message_delivered(result_sink)", "message_processed(python_worker)",
        "agent_message_received(result_sink)", "aggregator_received(result_sink)", "message_processed(result_sink)",
        "job_completed(result_sink)",
    ]
    handoff = events[10]["payload"]["message"]["envelope"]
    assert (handoff["type"], handoff["class"]) == ("shell_metrics", "event")
    assert events[17]["payload"]["message"]["envelope"]["type"] == "python_report"
    await harness.audit(job_id)


async def test_failure_exit_status(harness: Harness) -> None:
    job_id = await harness.submit({"bundle_id": "shell_python_chain_fail_exit_v1"})
    details = await harness.wait_status(job_id)
    result = details["job"]["result"]
    assert details["job"]["status"] == "failed"
    assert (result["agent_id"], result["error"]) == ("shell_worker", "command exited with status 3")
    assert (result["details"]["exit_code"], result["details"]["attempts"]) == (3, 1)
    events = await harness.events(job_id)
    assert [e["type"] for e in events[-3:]] == ["executor_attempt_failed", "executor_lease_released", "job_failed"]
    assert events[-3]["payload"]["transient"] is False and events[-3]["payload"]["retry_in_ms"] is None
    assert "sandbox_job_completed" not in {e["type"] for e in events}
    agent = next(a for a in details["agents"] if a["agent_id"] == "shell_worker")
    assert agent["last_error"] == "command exited with status 3" and agent["status"] == "error"
    await harness.audit(job_id)


async def test_failure_unknown_pool(harness: Harness) -> None:
    job_id = await harness.submit({"bundle_id": "shell_python_chain_fail_pool_v1"})
    details = await harness.wait_status(job_id)
    assert details["job"]["result"]["error"] == 'unknown executor pool "gpu"'
    events = await harness.events(job_id)
    assert [e["type"] for e in events[-3:]] == ["agent_message_received", "executor_lease_requested", "job_failed"]


async def test_failure_timeout_retries_once(harness: Harness) -> None:
    job_id = await harness.submit({"bundle_id": "shell_python_chain_fail_timeout_v1"})
    details = await harness.wait_status(job_id)
    result = details["job"]["result"]
    assert (result["error"], result["details"]["attempts"]) == ("timed out after 1 s", 2)
    failed = [e["payload"] for e in await harness.events(job_id) if e["type"] == "executor_attempt_failed"]
    assert len(failed) == 2
    assert (failed[0]["transient"], failed[0]["retry_in_ms"]) == (True, 100)
    assert failed[1]["retry_in_ms"] is None
    await harness.audit(job_id)


# ---------------------------------------------------------------- 13.4


async def test_streaming_peak_detection(harness: Harness) -> None:
    job_id = await harness.submit({"bundle_id": "streaming_peak_demo_v1"})
    details = await harness.wait_status(job_id)
    result = details["job"]["result"]
    assert result["agent_id"] == "peak_detector"
    out = result["output"]
    assert (out["chunks_received"], out["points_seen"], out["anomaly_detected"], out["peak_count"]) == (10, 60, True, 2)
    assert out["peaks"] == [
        {"sample_index": 20, "value": 80, "baseline": 23.875},
        {"sample_index": 40, "value": 76, "baseline": 24.375},
    ]
    assert out["largest_peak"]["sample_index"] == 20
    events = await harness.events(job_id)
    assert len(events) == 97
    by_agent = {a: [e for e in events if e["agent_id"] == a] for a in ("ingress", "telemetry_source", "peak_detector")}
    assert [e["type"] for e in by_agent["ingress"]] == ["message_delivered", "agent_message_received", "message_processed"]
    assert len(by_agent["telemetry_source"]) == 7  # delivered, received, 3 lease events, sandbox_job_completed, processed
    assert sum(1 for e in events if e["type"] == "message_delivered" and e["agent_id"] == "peak_detector") == 10
    received = [e["payload"] for e in by_agent["peak_detector"] if e["type"] == "agent_message_received"]
    assert [r["stream"]["seq"] for r in received] == list(range(1, 11))
    assert {(r["class"], r["content_type"], r["content_encoding"]) for r in received} == {
        ("stream", "application/x-ndjson", "gzip")
    }
    seen = [e["payload"]["state"]["agent_state"]["points_seen"] for e in by_agent["peak_detector"] if e["type"] == "message_processed"]
    assert seen == list(range(6, 61, 6))
    peaks = [e for e in events if e["type"] == "stream_peak_detected"]
    assert len(peaks) == 2
    assert sum(1 for e in events if e["type"] == "stream_chunk_processed") == 10
    await harness.audit(job_id)


# ---------------------------------------------------------------- 13.5


async def test_flow_a_pause_message_resume(harness: Harness) -> None:
    c = harness.client
    job_id = await harness.submit(load_manifest("pause_resume.json"))
    await harness.wait_status(job_id, ("running",))
    await harness.wait_event(job_id, lambda e: e["type"] == "message_processed" and e["agent_id"] == "root")
    r = await c.post(f"/api/v1/jobs/{job_id}/pause")
    assert (r.status_code, r.json()) == (200, {"status": "paused", "job_id": job_id})
    job = (await harness.details(job_id))["job"]
    assert (job["status"], job["status_reason"]) == ("paused", "paused by operator")
    r = await c.post(f"/api/v1/jobs/{job_id}/pause")
    assert (r.status_code, r.json()) == (409, {"error": f"job {job_id} is not running"})
    body = {"agent_id": "sink", "message": {"type": "manual_result", "payload": {"text": "approved while paused"}}}
    r = await c.post(f"/api/v1/jobs/{job_id}/messages", json=body)
    assert r.status_code == 202 and r.json()["message_id"]
    await asyncio.sleep(0.3)
    details = await harness.details(job_id)
    sink = next(a for a in details["agents"] if a["agent_id"] == "sink")
    assert (sink["mailbox_depth"], sink["status"], details["job"]["status"]) == (1, "paused", "paused")
    r = await c.post(f"/api/v1/jobs/{job_id}/resume")
    assert (r.status_code, r.json()) == (200, {"status": "resumed", "job_id": job_id})
    details = await harness.wait_status(job_id)
    assert details["job"]["result"]["output"]["last_message"] == {"text": "approved while paused"}
    events = await harness.events(job_id)
    assert types(events) == [
        "job_submitted", "job_queued", "job_scheduled", "message_delivered(root)", "job_running",
        "agent_message_received(root)", "message_processed(root)", "job_paused", "message_delivered(sink)",
        "job_resumed", "agent_message_received(sink)", "aggregator_received(sink)", "message_processed(sink)",
        "job_completed(sink)",
    ]
    external = events[8]["payload"]
    assert external["route"] == "external"
    assert (external["message"]["envelope"]["from"], external["message"]["envelope"]["class"]) == ("external", "command")
    assert (await c.post(f"/api/v1/jobs/{job_id}/resume")).json() == {"error": f"job {job_id} is not paused"}
    assert (await c.post(f"/api/v1/jobs/{job_id}/pause")).json() == {"error": f"job {job_id} is not running"}
    r = await c.post(f"/api/v1/jobs/{job_id}/cancel")
    assert (r.status_code, r.json()) == (409, {"error": f"job {job_id} is already in a terminal state (completed)"})
    assert (await c.post(f"/api/v1/jobs/{job_id}/messages", json={"agent_id": "sink"})).status_code == 409
    await harness.audit(job_id)


async def test_flow_b_cancel_a_job_that_never_completes(harness: Harness) -> None:
    c = harness.client
    manifest = load_manifest("pause_resume.json")
    manifest["nodes"][1]["config"] = {"complete_after": 10}
    job_id = await harness.submit(manifest)
    await harness.wait_status(job_id, ("running",))
    listed = (await c.get("/api/v1/jobs")).json()["data"]
    assert next(j for j in listed if j["job_id"] == job_id)["live?"] is True
    r = await c.post(f"/api/v1/jobs/{job_id}/messages", json={"agent_id": "ghost"})
    assert (r.status_code, r.json()) == (404, {"error": f"agent ghost was not found in job {job_id}"})
    assert (await c.post(f"/api/v1/jobs/{job_id}/resume")).status_code == 409
    r = await c.post(f"/api/v1/jobs/{job_id}/cancel")
    assert (r.status_code, r.json()) == (200, {"status": "cancelled", "job_id": job_id})
    details = await harness.details(job_id)
    assert details["job"]["status"] == "cancelled"
    assert details["job"]["result"] == {"reason": "cancelled by operator"}
    assert details["summary"]["live?"] is False
    events = await harness.events(job_id)
    assert events[-1]["type"] == "job_cancelled" and events[-1]["payload"]["reason"] == "cancelled by operator"
    r = await c.post(f"/api/v1/jobs/{job_id}/cancel")
    assert (r.status_code, r.json()) == (200, {"status": "cancelled", "job_id": job_id})
    assert len(await harness.events(job_id)) == len(events)
    assert (await c.post(f"/api/v1/jobs/{job_id}/pause")).json() == {"error": f"job {job_id} is not running"}
    await harness.audit(job_id)


def _process_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


def _sleepers() -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if f.read().split(b"\0")[:2] == [b"sleep", b"300"] and _process_alive(int(entry)):
                        pids.append(int(entry))
            except OSError:
                pass
    return pids


async def test_flow_c_cancel_kills_the_running_command(harness: Harness) -> None:
    before = set(_sleepers())
    job_id = await harness.submit(load_manifest("cancel_running.json"))
    await harness.wait_event(job_id, lambda e: e["type"] == "executor_lease_acquired")
    deadline = asyncio.get_running_loop().time() + 10
    while not set(_sleepers()) - before:
        assert asyncio.get_running_loop().time() < deadline, "sleep 300 never started"
        await asyncio.sleep(0.05)
    r = await harness.client.post(f"/api/v1/jobs/{job_id}/cancel")
    assert r.status_code == 200
    deadline = asyncio.get_running_loop().time() + 5
    while set(_sleepers()) - before:
        assert asyncio.get_running_loop().time() < deadline, "the command survived the cancel by 5 s"
        await asyncio.sleep(0.05)
    while True:
        nodes = (await harness.client.get("/api/v1/nodes")).json()["data"]
        pool = next(n for n in nodes if n["self?"])["executor_pools"]["default"]
        if (pool["in_use"], pool["active"]) == (0, 0):
            break
        assert asyncio.get_running_loop().time() < deadline, pool
        await asyncio.sleep(0.05)
    events = await harness.events(job_id)
    assert events[-1]["type"] == "job_cancelled"
    assert not {"sandbox_job_completed", "executor_attempt_failed", "executor_lease_released"} & {e["type"] for e in events}
    for pid in set(_sleepers()) - before:
        os.kill(pid, signal.SIGKILL)


# ---------------------------------------------------------------- races


@pytest.mark.parametrize("settings_overrides", [{"max_active_jobs": 250}])
async def test_cancel_versus_complete_race(harness: Harness) -> None:
    """≥ 200 races of an external message that completes the job against a cancel."""
    c = harness.client
    manifest = load_manifest("pause_resume.json")
    job_ids = [await harness.submit(copy.deepcopy(manifest)) for _ in range(200)]
    for job_id in job_ids:
        await harness.wait_status(job_id, ("running",))

    async def race(job_id: str) -> tuple[str, int]:
        message = c.post(f"/api/v1/jobs/{job_id}/messages", json={"agent_id": "sink", "message": {"x": 1}})
        _, cancel = await asyncio.gather(message, c.post(f"/api/v1/jobs/{job_id}/cancel"))
        return job_id, cancel.status_code

    outcomes = await asyncio.gather(*(race(j) for j in job_ids))
    for job_id, cancel_status in outcomes:
        details = await harness.wait_status(job_id)
        events = await harness.events(job_id)
        terminal = [e for e in events if e["type"] in ("job_completed", "job_failed", "job_cancelled")]
        assert len(terminal) == 1 and terminal[0] is events[-1]
        expected = "cancelled" if cancel_status == 200 else "completed"
        assert cancel_status in (200, 409)
        assert details["job"]["status"] == expected
