"""The example bundles (SPEC §13, Appendix B.23): they scan cleanly and their payloads compute §13's figures.

Payload scripts run as subprocesses the way an executor runs them (§7.5.3–§7.5.4): the node's uploads
copied into a staging directory, its workdir and command from the manifest, the MIRROR_NEURON_* files
written beforehand.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from app.bundles.scanner import BundleCandidate, scan_bundles_dir
from app.domain.manifest import normalize_manifest, validate_manifest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SANDBOX_ROOT = "/sandbox/job"

EXPECTED_BUNDLES = {
    "research_flow_v1": "research_flow",
    "prime_sweep_4_workers": "prime_sweep_4_workers",
    "shell_python_chain_v1": "shell_python_chain",
    "shell_python_chain_fail_exit_v1": "shell_python_chain_fail_exit",
    "shell_python_chain_fail_pool_v1": "shell_python_chain_fail_pool",
    "shell_python_chain_fail_timeout_v1": "shell_python_chain_fail_timeout",
    "streaming_peak_demo_v1": "streaming_peak_demo",
}
SHELL_SEED = {
    "request_id": "demo-quick-001",
    "label": "quick-signal",
    "text": "Agents orchestrate workers while sandboxes isolate execution.",
}


@pytest.fixture(scope="module")
def bundles() -> dict[str, BundleCandidate]:
    candidates, log_lines = scan_bundles_dir(EXAMPLES)
    assert log_lines == []
    return {candidate.bundle_id: candidate for candidate in candidates}


def _node(bundle: BundleCandidate, node_id: str) -> dict[str, Any]:
    return next(node for node in bundle.manifest["nodes"] if node["node_id"] == node_id)


def _run_executor(
    bundle: BundleCandidate,
    node_id: str,
    body: Any,
    staging: Path,
    *,
    message: dict[str, Any] | None = None,
    encoded_body: bytes | None = None,
    agent_state: Any = None,
) -> str:
    """Run one executor node's command on `body` as §7.5 describes; return its stdout."""
    node = _node(bundle, node_id)
    config = node["config"]
    staging.mkdir(parents=True)
    source = Path(bundle.path) / "payloads" / config["upload_path"]
    shutil.copytree(source, staging / config.get("upload_as", source.name))
    workdir = staging / config["workdir"].removeprefix(SANDBOX_ROOT).lstrip("/")
    message = message or {"envelope": {"content_type": "application/json"}, "body": body, "stream": None}
    files = {
        "INPUT": ("mirror_neuron_input.json", json.dumps(body, indent=2).encode()),
        "MESSAGE": ("mirror_neuron_message.json", json.dumps(message).encode()),
        "BODY": (
            "mirror_neuron_body.bin",
            encoded_body if encoded_body is not None else json.dumps(body).encode(),
        ),
        "CONTEXT": (
            "mirror_neuron_context.json",
            json.dumps({"job_id": "job-1", "agent_id": node_id, "agent_state": agent_state or {}}).encode(),
        ),
    }
    env = {name: value for name, value in os.environ.items() if not name.startswith("MIRROR_NEURON_")}
    for key, (name, content) in files.items():
        (staging / name).write_bytes(content)
        env[f"MIRROR_NEURON_{key}_FILE"] = str(staging / name)
    envelope = message.get("envelope", {})
    env |= {
        "MIRROR_NEURON_BODY_CONTENT_TYPE": envelope.get("content_type", "application/json"),
        "MIRROR_NEURON_BODY_CONTENT_ENCODING": envelope.get("content_encoding", "identity"),
        "MIRROR_NEURON_AGENT_TYPE": node["agent_type"],
        "MIRROR_NEURON_AGENT_TEMPLATE": node["type"],
        "MIRROR_NEURON_JOB_ID": "job-1",
        "MIRROR_NEURON_AGENT_ID": node_id,
        "MIRROR_NEURON_WORKDIR": str(workdir),
        **config.get("environment", {}),
    }
    completed = subprocess.run(
        config["command"],
        cwd=workdir,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stderr
    return completed.stdout


def _output_payload(node_id: str, stdout: str, body: Any) -> dict[str, Any]:
    return {
        "agent_id": node_id,
        "sandbox": {"exit_code": 0, "stdout": stdout, "raw_output": stdout},
        "input": body,
    }


# --- scanning ------------------------------------------------------------------------------------------


def test_every_example_bundle_is_valid_and_registered_under_its_graph_id(
    bundles: dict[str, BundleCandidate],
) -> None:
    assert {bundle_id: Path(bundle.path).name for bundle_id, bundle in bundles.items()} == EXPECTED_BUNDLES
    assert bundles["research_flow_v1"].payload_files == []


def test_raw_manifests_validate_without_a_bundle() -> None:
    graph_ids = {}
    for path in sorted((EXAMPLES / "manifests").glob("*.json")):
        raw = json.loads(path.read_text())
        assert validate_manifest(raw, has_bundle=False, resolve_upload=None) == [], path.name
        graph_ids[path.name] = raw["graph_id"]
    assert graph_ids == {
        "cancel_running.json": "cancel_running_test",
        "pause_resume.json": "pause_resume_test",
        "research_flow.json": "research_flow_v1",
    }
    research = json.loads((EXAMPLES / "manifests" / "research_flow.json").read_text())
    assert research == json.loads((EXAMPLES / "research_flow" / "manifest.json").read_text())


def test_raw_manifests_are_not_bundles() -> None:
    assert not (EXAMPLES / "manifests" / "manifest.json").exists()


@pytest.mark.parametrize(
    ("bundle_id", "shell_changes"),
    [
        ("shell_python_chain_fail_exit_v1", {"command": ["bash", "-c", "exit 3"]}),
        ("shell_python_chain_fail_pool_v1", {"pool": "gpu"}),
        (
            "shell_python_chain_fail_timeout_v1",
            {"command": "sleep 5", "timeout_seconds": 1, "max_attempts": 2, "retry_backoff_ms": 100},
        ),
    ],
)
def test_failure_twins_differ_from_the_chain_only_in_the_shell_worker(
    bundles: dict[str, BundleCandidate], bundle_id: str, shell_changes: dict[str, Any]
) -> None:
    chain = bundles["shell_python_chain_v1"]
    twin = bundles[bundle_id]
    expected = json.loads(json.dumps(chain.raw_manifest))
    expected["graph_id"] = bundle_id
    expected["job_name"] = bundle_id
    expected["nodes"][0]["config"] |= shell_changes

    assert normalize_manifest(twin.raw_manifest) == normalize_manifest(expected)
    assert twin.payload_files == chain.payload_files


# --- §13.2 prime sweep -----------------------------------------------------------------------------------


def test_prime_sweep_payloads_compute_the_expected_summary(
    bundles: dict[str, BundleCandidate], tmp_path: Path
) -> None:
    bundle = bundles["prime_sweep_4_workers"]
    seed = bundle.manifest["initial_inputs"]["dispatcher"][0]
    workers = [f"prime_worker_000{k}" for k in range(1, 5)]
    results = [
        _output_payload(worker, _run_executor(bundle, worker, seed, tmp_path / worker), seed)
        for worker in workers
    ]
    chunks = [json.loads(result["sandbox"]["stdout"]) for result in results]
    # Arrival order at the collector is arbitrary; the summary sorts by range_start.
    arrived = list(reversed(results))
    collection = {"messages": arrived, "count": 4, "last_message": arrived[-1]}

    stdout = _run_executor(bundle, "summarizer", collection, tmp_path / "summarizer")

    assert [chunk["checked_numbers"] for chunk in chunks] == [100, 100, 100, 100]
    assert set(json.loads(stdout)) == {"complete_job"}
    summary = json.loads(stdout)["complete_job"]
    assert summary["mode"] == "prime_sweep"
    assert (summary["prime_count"], summary["checked_numbers"], summary["worker_count"]) == (32, 400, 4)
    assert (summary["range_start"], summary["range_end"]) == (1000003, 1000402)
    assert [chunk["prime_count"] for chunk in summary["chunks"]] == [6, 10, 8, 8]
    assert [chunk["worker_id"] for chunk in summary["chunks"]] == workers
    assert summary["first_25_primes"][:5] == [1000003, 1000033, 1000037, 1000039, 1000081]
    assert summary["last_25_primes"][-3:] == [1000381, 1000393, 1000397]
    assert len(summary["first_25_primes"]) == len(summary["last_25_primes"]) == 25


# --- §13.3 shell → python chain --------------------------------------------------------------------------


def test_shell_python_chain_payloads_produce_the_headline(
    bundles: dict[str, BundleCandidate], tmp_path: Path
) -> None:
    bundle = bundles["shell_python_chain_v1"]
    assert bundle.manifest["initial_inputs"]["shell_worker"] == [SHELL_SEED]

    metrics_stdout = _run_executor(bundle, "shell_worker", SHELL_SEED, tmp_path / "shell")
    shell_payload = _output_payload("shell_worker", metrics_stdout, SHELL_SEED)
    report = json.loads(_run_executor(bundle, "python_worker", shell_payload, tmp_path / "python"))

    assert json.loads(metrics_stdout) == {"text": SHELL_SEED["text"], "word_count": 7, "char_count": 61}
    assert report["request_id"] == "demo-quick-001"
    assert report["headline"] == "quick-signal: 7 words, 61 chars"
    assert report["text_preview"] == SHELL_SEED["text"][:40]
    assert isinstance(report["explanation"], str)


@pytest.mark.parametrize(
    ("text", "words", "chars"),
    [("", 0, 0), ("  spaced\tout\nlines\n", 3, 19), ("naïve café", 2, 12)],
)
def test_shell_metrics_count_like_wc(
    bundles: dict[str, BundleCandidate], tmp_path: Path, text: str, words: int, chars: int
) -> None:
    stdout = _run_executor(
        bundles["shell_python_chain_v1"], "shell_worker", {"text": text}, tmp_path / "shell"
    )

    assert json.loads(stdout) == {"text": text, "word_count": words, "char_count": chars}


# --- §13.4 streaming peak detection ------------------------------------------------------------------------


def test_streaming_payloads_find_the_two_peaks(bundles: dict[str, BundleCandidate], tmp_path: Path) -> None:
    bundle = bundles["streaming_peak_demo_v1"]
    seed = bundle.manifest["initial_inputs"]["ingress"][0]
    emitted = json.loads(_run_executor(bundle, "telemetry_source", seed, tmp_path / "source"))[
        "emit_messages"
    ]
    state: Any = {}
    peak_chunks, points_seen, completions = [], [], []
    for item in emitted:
        message = {
            "envelope": {"type": item["type"], "class": item["class"], "content_type": item["content_type"]}
            | {"content_encoding": item["content_encoding"]},
            "headers": item["headers"],
            "body": item["body"],
            "artifacts": [],
            "stream": item["stream"],
        }
        staging = tmp_path / f"detector_{item['stream']['seq']}"
        encoded = gzip.compress(item["body"].encode())
        stdout = _run_executor(
            bundle,
            "peak_detector",
            item["body"],
            staging,
            message=message,
            encoded_body=encoded,
            agent_state=state,
        )
        output = json.loads(stdout)
        state = output["next_state"]
        points_seen.append(state["points_seen"])
        types = [event["type"] for event in output["events"]]
        if "stream_peak_detected" in types:
            peak_chunks.append(item["stream"]["seq"])
        completions.append(output.get("complete_job"))

    assert [item["stream"]["seq"] for item in emitted] == list(range(1, 11))
    assert {(item["class"], item["content_type"], item["content_encoding"]) for item in emitted} == {
        ("stream", "application/x-ndjson", "gzip")
    }
    assert emitted[0]["stream"] == {
        "stream_id": "job-1:telemetry_source:telemetry",
        "seq": 1,
        "open": True,
        "close": False,
        "eof": False,
    }
    assert points_seen == list(range(6, 61, 6))
    assert peak_chunks == [4, 7]
    assert completions[:-1] == [None] * 9
    result = completions[-1]
    assert result["mode"] == "stream_peak_detection"
    assert (result["chunks_received"], result["points_seen"], result["peak_count"]) == (10, 60, 2)
    assert result["anomaly_detected"] is True
    assert result["device_id"] == "sensor-alpha"
    assert result["peaks"] == [
        {"sample_index": 20, "value": 80, "baseline": 23.875},
        {"sample_index": 40, "value": 76, "baseline": 24.375},
    ]
    assert result["largest_peak"]["sample_index"] == 20
