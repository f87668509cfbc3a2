"""Crash, recovery and fencing with real node processes (SPEC §8, §13.2 recovery variant)."""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.replay import compare_with_api
from tests.runtime.processes import NodeProcess, slow_prime_bundles, wait_for

WORKERS = [f"prime_worker_000{k}" for k in range(1, 5)]


def _events(node: NodeProcess, job_id: str) -> list[dict[str, Any]]:
    status, body = node.request("GET", f"/api/v1/jobs/{job_id}/events")
    assert status == 200, body
    return list(body["data"])


def _status(node: NodeProcess, job_id: str) -> str:
    return str(node.request("GET", f"/api/v1/jobs/{job_id}")[1]["job"]["status"])


def _workers_running(node: NodeProcess, job_id: str) -> bool:
    acquired = {e["agent_id"] for e in _events(node, job_id) if e["type"] == "executor_lease_acquired"}
    return len(acquired & set(WORKERS)) >= 2


def _assert_exactly_once(node: NodeProcess, job_id: str) -> list[dict[str, Any]]:
    events = _events(node, job_id)
    status, details = node.request("GET", f"/api/v1/jobs/{job_id}")
    job = details["job"]
    assert job["status"] == "completed", (job["result"], node.log())
    assert job["result"]["output"]["prime_count"] == 32
    assert [c["prime_count"] for c in job["result"]["output"]["chunks"]] == [6, 10, 8, 8]
    terminal = [e for e in events if e["type"] in ("job_completed", "job_failed", "job_cancelled")]
    assert len(terminal) == 1 and terminal[0] == events[-1]
    assert [e["payload"]["count"] for e in events if e["type"] == "aggregator_received"] == [1, 2, 3, 4]
    processed = Counter(e["payload"]["message_id"] for e in events if e["type"] == "message_processed")
    assert all(n == 1 for n in processed.values()), processed
    for worker in WORKERS:
        assert sum(1 for e in events if e["type"] == "message_processed" and e["agent_id"] == worker) == 1
    assert compare_with_api(events, details) == []
    return events


@pytest.fixture
def bundles(tmp_path: Path) -> Path:
    return slow_prime_bundles(tmp_path / "bundles", 3)


def test_owner_killed_another_node_finishes(database_url: str, backend: str, db: Any, tmp_path: Path, bundles: Path) -> None:
    """Two nodes on one database (Postgres), or the single node restarted (SQLite)."""
    env = {"MIRROR_NEURON_BUNDLES_DIR": str(bundles)}
    owner = NodeProcess("node-a", database_url, tmp_path, **env).start()
    other = None
    try:
        status, body = owner.request("POST", "/api/v1/jobs", {"bundle_id": "prime_sweep_4_workers"})
        assert status == 201, body
        job_id = body["job_id"]
        wait_for(lambda: _workers_running(owner, job_id), 30, "workers to run")
        owner.kill()  # before the other node starts: a slow start must not let the owner finish first
        # Postgres: another node takes over; SQLite: one host, the same node restarts.
        other_name = "node-b" if backend == "postgres" else "node-a"
        other = NodeProcess(other_name, database_url, tmp_path, **env).start()
        wait_for(lambda: _status(other, job_id) in ("completed", "failed", "cancelled"), 60, "completion")
        events = _assert_exactly_once(other, job_id)
        started = [e for e in events if e["type"] == "job_recovery_started"]
        assert len(started) == 1
        assert started[0]["payload"]["cause"] == "lease_expired"
        assert started[0]["payload"]["from_node"] == "node-a"
        assert started[0]["payload"]["node"] == other.name
        recovered = [e["agent_id"] for e in events if e["type"] == "agent_recovered"]
        assert recovered == ["dispatcher", *WORKERS, "collector", "summarizer"]
    finally:
        owner.kill()
        if other is not None:
            other.stop()


def test_a_paused_owner_cannot_write_after_losing_its_lease(
    database_url: str, backend: str, db: Any, tmp_path: Path, bundles: Path
) -> None:
    """Fencing: SIGSTOP the owner past its lease; the other node takes over; the owner wakes up.

    Postgres only: a process stopped while it holds SQLite's file write lock blocks every writer
    on the host, and SQLite has no way to break it. The runner-level fencing test in
    test_fencing.py covers both databases.
    """
    if backend == "sqlite":
        pytest.skip("a SIGSTOPped SQLite writer can hold the file lock; see test_fencing.py for SQLite")
    env = {"MIRROR_NEURON_BUNDLES_DIR": str(bundles)}
    owner = NodeProcess("node-a", database_url, tmp_path, **env).start()
    other = None
    try:
        status, body = owner.request("POST", "/api/v1/jobs", {"bundle_id": "prime_sweep_4_workers"})
        job_id = body["job_id"]
        wait_for(lambda: _workers_running(owner, job_id), 30, "workers to run")
        owner.signal(signal.SIGSTOP)
        other = NodeProcess("node-b", database_url, tmp_path, **env).start()
        wait_for(
            lambda: any(e["type"] == "job_recovery_started" for e in _events(other, job_id)), 30, "take-over"
        )
        time.sleep(4)  # the owner's commands finish meanwhile; it is woken with results to commit
        owner.signal(signal.SIGCONT)
        wait_for(lambda: _status(other, job_id) in ("completed", "failed", "cancelled"), 60, "completion")
        _assert_exactly_once(other, job_id)
        # The owner notices through a refused commit ("lost the lease of <job>") or through its heartbeat,
        # which finds it declared lost; when the job has already completed elsewhere, only the latter.
        noticed = ("lost the lease", "was replaced or declared lost")
        wait_for(lambda: any(text in owner.log_text() for text in noticed), 15, "owner to notice")
    finally:
        if owner.process is not None and owner.process.poll() is None:
            owner.signal(signal.SIGCONT)
        owner.kill()
        if other is not None:
            other.stop()
