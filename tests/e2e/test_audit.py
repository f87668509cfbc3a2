"""Auditing from outside (issue 4): `mirror-neuron audit` over HTTP, tamper detection, cleanups."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from app.store.database import Database
from tests.runtime.processes import ROOT, NodeProcess, wait_for

NODE = shutil.which("node")

SCENARIOS: list[dict[str, Any]] = [
    {"bundle_id": "prime_sweep_4_workers"},
    {"bundle_id": "shell_python_chain_v1"},
    {"bundle_id": "streaming_peak_demo_v1"},
    {"bundle_id": "shell_python_chain_fail_exit_v1"},
    {"bundle_id": "shell_python_chain_fail_pool_v1"},
    json.loads((ROOT / "examples" / "manifests" / "research_flow.json").read_text()),
]
# research_flow again, its input holding numbers whose two canonical forms differ (SPEC C.1.1:
# 1.0 is stored as 1, 1e16 as 10000000000000000, 1e-7 as 1e-7) and keys that sort differently
# by UTF-16 units than by code points.
FLOATS = json.loads((ROOT / "examples" / "manifests" / "research_flow.json").read_text())
FLOATS["initial_inputs"]["ingress"][0].update({"weight": 1.0, "population": 1e16, "tiny": 1e-7, "\U0001f600": 1, "\ufb33": 2})
SCENARIOS.append(FLOATS)


def verify_python(node: NodeProcess, job_id: str) -> subprocess.CompletedProcess[str]:
    """The stand-alone verifier (examples/audit/verify_chain.py: stdlib + rfc8785)."""
    script = str(ROOT / "examples" / "audit" / "verify_chain.py")
    return subprocess.run([sys.executable, script, job_id, "--url", node.url], capture_output=True, text=True, timeout=120)


def verify_node(node: NodeProcess, job_id: str) -> subprocess.CompletedProcess[str]:
    """The console's verifier (app/console/static/js/verify-chain.js) in a real Node process."""
    script = str(ROOT / "examples" / "audit" / "verify-chain.mjs")
    return subprocess.run([NODE or "node", script, job_id, "--url", node.url], capture_output=True, text=True, timeout=120)


VERIFIERS = (verify_python, verify_node)


def audit(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", "audit", *args], cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, **(env or {})},
    )


def _finished(node: NodeProcess, job_id: str) -> bool:
    return node.request("GET", f"/api/v1/jobs/{job_id}")[1]["job"]["status"] in ("completed", "failed", "cancelled")


@pytest.fixture
def node(database_url: str, db: Database, tmp_path: Path) -> Any:
    process = NodeProcess("audit-node", database_url, tmp_path, MIRROR_NEURON_BUNDLES_DIR=str(ROOT / "examples")).start()
    yield process
    process.stop()


def run_scenarios(node: NodeProcess) -> list[str]:
    job_ids = []
    for body in SCENARIOS:
        status, answer = node.request("POST", "/api/v1/jobs", body)
        assert status == 201, answer
        job_ids.append(answer["job_id"])
    for job_id in job_ids:
        wait_for(lambda j=job_id: _finished(node, j), 90, f"{job_id} to finish")
    return job_ids


async def _tamper(
    db: Database, backend: str, job_id: str, sequence: int, *, column: str = "payload", value: str | None = None
) -> None:
    """Rewrite one event's payload (or another column) as the database owner would have to (lifting the trigger)."""
    forged = json.dumps({"node": "forged-node"}) if value is None else value
    async with db.write() as conn:
        if backend == "postgres":
            await conn.execute(text("ALTER TABLE events DISABLE TRIGGER events_no_update"))
        else:
            await conn.execute(text("DROP TRIGGER events_no_update"))
        await conn.execute(
            text(f"UPDATE events SET {column} = :p WHERE stream_id = :j AND sequence = :s"),
            {"p": forged, "j": job_id, "s": sequence},
        )
        if backend == "postgres":
            await conn.execute(text("ALTER TABLE events ENABLE TRIGGER events_no_update"))
        else:
            await conn.execute(
                text("CREATE TRIGGER events_no_update BEFORE UPDATE ON events "
                     "BEGIN SELECT RAISE(ABORT, 'events are immutable'); END")
            )


async def test_audit_all_passes_then_tampering_is_named(node: NodeProcess, db: Database, backend: str) -> None:
    job_ids = run_scenarios(node)
    passed = audit("--all", "--url", node.url)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert f"audit: {len(job_ids)} of {len(job_ids)} jobs replay" in passed.stdout
    # SPEC C.1.4: two verifiers that share no code with app/ check every event of every scenario.
    for job_id in job_ids:
        status, events = node.request("GET", f"/api/v1/jobs/{job_id}/events")
        assert {e["hash_alg"] for e in events["data"]} == {"jcs-sha256"}
        for verifier in VERIFIERS:
            verdict = verifier(node, job_id)
            assert verdict.returncode == 0, (verifier.__name__, verdict.stdout, verdict.stderr)
            assert verdict.stdout.startswith(f"OK {len(events['data'])} events"), verdict.stdout
    victim = job_ids[0]
    status, events = node.request("GET", f"/api/v1/jobs/{victim}/events")
    scheduled = next(e for e in events["data"] if e["type"] == "job_scheduled")
    await _tamper(db, backend, victim, scheduled["sequence"])
    failed = audit(victim, "--url", node.url)
    assert failed.returncode == 1, failed.stdout
    assert f"event {scheduled['sequence']} (job_scheduled, {scheduled['event_id']}): hash mismatch" in failed.stdout
    assert "FAILED" in failed.stdout
    for verifier in VERIFIERS:
        verdict = verifier(node, victim)
        assert verdict.returncode == 1 and f"BAD {scheduled['sequence']}: hash mismatch" in verdict.stdout, verdict.stdout
    # hash_alg flipped: a jcs-sha256 event relabelled pyjson-sha256 after others is tampering
    # (C.1.3), and so is the first one when its two forms differ (the float job's submission).
    floats = job_ids[-1]
    await _tamper(db, backend, job_ids[1], 4, column="hash_alg", value="pyjson-sha256")
    await _tamper(db, backend, floats, 1, column="hash_alg", value="pyjson-sha256")
    for job_id, sequence in ((job_ids[1], 4), (floats, 1)):
        failed = audit(job_id, "--url", node.url)
        assert failed.returncode == 1 and f"event {sequence} (" in failed.stdout, failed.stdout
        for verifier in VERIFIERS:
            verdict = verifier(node, job_id)
            assert verdict.returncode == 1 and verdict.stdout.startswith(f"BAD {sequence}: "), verdict.stdout
    everything = audit("--all", "--url", node.url)
    assert everything.returncode == 1
    assert f"{len(job_ids) - 3} of {len(job_ids)} jobs replay" in everything.stdout


def test_cleanup_records_check_against_an_archive(node: NodeProcess, database_url: str, tmp_path: Path) -> None:
    status, answer = node.request("POST", "/api/v1/jobs", SCENARIOS[-1])
    job_id = answer["job_id"]
    wait_for(lambda: _finished(node, job_id), 30, "the job to finish")
    status, feed = node.request("GET", "/api/v1/events?after=0&limit=1000")
    archive = tmp_path / "archive.ndjson"
    archive.write_text("".join(json.dumps(e) + "\n" for e in feed["data"] if e["job_id"] == job_id))
    status, cleaned = node.request("POST", "/api/v1/jobs/cleanup")
    assert status == 200 and job_id in cleaned["deleted_jobs"]
    ok = audit("--cleanups", "--database-url", database_url, "--archive", str(archive))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "1 checked against the archive" in ok.stdout
    lines = archive.read_text().splitlines()
    archive.write_text("\n".join(lines[:-1]) + "\n")  # an archive that lost the last event
    bad = audit("--cleanups", "--database-url", database_url, "--archive", str(archive))
    assert bad.returncode == 1
    assert f"jobs_cleaned[{job_id}]: event_count {len(lines)} but the archive holds {len(lines) - 1}" in bad.stdout
    assert audit("--cleanups").returncode == 2


def test_audit_of_a_live_job_and_of_an_unknown_one(node: NodeProcess) -> None:
    manifest = json.loads((ROOT / "examples" / "manifests" / "pause_resume.json").read_text())
    manifest["nodes"][1]["config"] = {"complete_after": 10}
    status, answer = node.request("POST", "/api/v1/jobs", manifest)
    job_id = answer["job_id"]
    wait_for(lambda: node.request("GET", f"/api/v1/jobs/{job_id}")[1]["job"]["status"] == "running", 30, "running")
    time.sleep(0.3)
    live = audit(job_id, "--url", node.url)
    assert live.returncode == 0, live.stdout
    missing = audit("nope-1-000000000000", "--url", node.url)
    assert missing.returncode == 1 and "answered 404" in missing.stderr
