"""An uploaded bundle runs on a worker that has no bundles directory (SPEC C.2.3), with real node processes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.bundle_zips import zip_directory
from tests.runtime.processes import ROOT, NodeProcess, wait_for

CHAIN = ROOT / "examples" / "shell_python_chain"
# Decided afresh by every run: the job id, the node, lease ids and times, durations, the wait for a
# pool slot, the sandbox and staging directory names. Everything else of the result (every stdout,
# exit code, message and input) must be the same.
VOLATILE = {
    "job_id", "node", "node_name", "lease_id", "acquired_at_ms", "requested_at_ms", "duration_ms",
    "sandbox_name", "remote_dir", "queue_wait_ms",
}


def _stable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


def _differences(a: Any, b: Any, at: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b)) for d in _differences(a.get(k), b.get(k), f"{at}.{k}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in _differences(x, y, f"{at}[{i}]")]
    return [] if a == b else [f"{at}: {a!r} != {b!r}"]


def _finished(node: NodeProcess, job_id: str) -> dict[str, Any] | None:
    status, details = node.request("GET", f"/api/v1/jobs/{job_id}")
    assert status == 200, details
    job = details["job"]
    return job if job["status"] in ("completed", "failed", "cancelled") else None


def _run(node: NodeProcess, body: dict[str, Any]) -> dict[str, Any]:
    status, created = node.request("POST", "/api/v1/jobs", body)
    assert status == 201, created
    job = wait_for(lambda: _finished(node, created["job_id"]), 60, f"job {created['job_id']}")
    assert job["status"] == "completed", (job["result"], node.log())
    return dict(job)


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *args], cwd=ROOT, env={**os.environ, **env},
        capture_output=True, text=True, timeout=120,
    )


def test_an_uploaded_bundle_runs_on_a_worker_without_bundles(
    database_url: str, backend: str, db: Any, tmp_path: Path
) -> None:
    if backend != "postgres":
        pytest.skip("an API node and a separate worker on one database is the Postgres deployment (issue 18)")
    bundles = tmp_path / "bundles"
    shutil.copytree(CHAIN, bundles / "shell_python_chain")
    scanning = NodeProcess("scanning", database_url, tmp_path, MIRROR_NEURON_BUNDLES_DIR=str(bundles)).start()
    try:
        scanned = _run(scanning, {"bundle_id": "shell_python_chain_v1"})
    finally:
        scanning.stop()

    worker_temp = tmp_path / "worker-temp"
    api = NodeProcess("api-only", database_url, tmp_path, MIRROR_NEURON_RUNTIME_ENABLED="0").start()
    worker = NodeProcess("worker", database_url, tmp_path, command="worker", MIRROR_NEURON_TEMP_DIR=str(worker_temp))
    worker.start()
    try:
        wait_for(
            lambda: any(n["name"] == "worker" and n["status"] == "alive" for n in api.request("GET", "/api/v1/nodes")[1]["data"]),
            30, "the worker to register",
        )
        # The upstream web UI's Run Job page: upload the zip (field `bundle`), submit its bundle_path.
        data = zip_directory(CHAIN, "shell_python_chain")
        response = httpx.post(f"{api.url}/api/v1/bundles/upload", files={"bundle": ("chain.zip", data, "application/zip")})
        assert response.status_code == 200, response.text
        uploaded = response.json()
        assert uploaded["fingerprint"] == scanned["bundle"]["fingerprint"]
        ran = _run(api, {"_bundle_path": uploaded["bundle_path"]})
        assert ran["node"] == "worker"
        differences = _differences(_stable(ran["result"]), _stable(scanned["result"]))
        assert not differences, "\n".join(differences)
        assert ran["manifest_ref"]["job_path"] == uploaded["bundle_path"]
        cached = worker_temp / "mirror_neuron_bundles" / uploaded["fingerprint"]
        assert (cached / "payloads" / "word_count" / "scripts" / "collect_metrics.sh").is_file()
        assert [p.name for p in cached.parent.iterdir()] == [uploaded["fingerprint"]]
        audit = _cli("audit", "--all", "--url", api.url)
        assert audit.returncode == 0, audit.stdout + audit.stderr
    finally:
        worker.stop()
        api.stop()
    verify = _cli("verify", MIRROR_NEURON_DATABASE_URL=database_url)
    assert verify.returncode == 0, verify.stdout + verify.stderr
