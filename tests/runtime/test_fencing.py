"""A runner that lost its lease cannot write (DESIGN §2 invariant 8), on SQLite and Postgres.

Node A runs an executor whose first run sleeps; A's heartbeat and scheduler are stopped, as if
its VM were paused, so its lease expires. Node B takes the job over, re-runs the step (the gate
directory exists now, so the re-run is quick) and completes the job. Then A's command finishes
and A tries to commit its step: the fence refuses it and nothing is appended.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.http.app import create_app
from app.runtime.node import Node
from app.service import Service
from app.store.database import Database
from tests.replay import compare_with_api
from tests.runtime.conftest import node_settings


async def test_runner_without_its_lease_cannot_commit(
    database_url: str, db: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    gate = tmp_path / "gate"
    command = f"if mkdir {gate} 2>/dev/null; then sleep 7; fi; echo '{{\"complete_job\": {{\"ok\": true}}}}'"
    manifest = {
        "manifest_version": "1", "graph_id": "fencing", "entrypoints": ["work"],
        "nodes": [{"node_id": "work", "agent_type": "executor", "config": {"command": command}}],
    }
    db_b = Database(database_url)
    node_a = Node(node_settings(database_url, tmp_path, node_name="node-a"), db, Service(db))
    node_b = Node(node_settings(database_url, tmp_path, node_name="node-b"), db_b, Service(db_b))
    await node_a.start()
    app = create_app(node_a.settings, db, node_a.service, node_name="node-a")
    caplog.set_level(logging.WARNING, logger="app.runtime.runner")
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            job_id = (await client.post("/api/v1/jobs", json=manifest)).json()["job_id"]

            async def events() -> list[dict[str, Any]]:
                return list((await client.get(f"/api/v1/jobs/{job_id}/events")).json()["data"])

            while not any(e["type"] == "executor_lease_acquired" for e in await events()):
                await asyncio.sleep(0.05)
            # "Pause" node A: no more heartbeats or scheduling; its runner keeps going.
            for task in node_a._tasks:
                task.cancel()
            runner_a = node_a.runners[job_id]
            await node_b.start()
            while (await client.get(f"/api/v1/jobs/{job_id}")).json()["job"]["status"] != "completed":
                await asyncio.sleep(0.05)
            await asyncio.wait_for(runner_a.done.wait(), timeout=30)
            log = [r.getMessage() for r in caplog.records]
            assert any("lost the lease" in line for line in log), log
            recorded = await events()
            details = (await client.get(f"/api/v1/jobs/{job_id}")).json()
    finally:
        await node_b.stop()
        await node_a.stop()
        await db_b.dispose()
    assert details["job"]["result"] == {"agent_id": "work", "output": {"ok": True}}
    terminal = [e for e in recorded if e["type"] in ("job_completed", "job_failed", "job_cancelled")]
    assert terminal == [recorded[-1]]
    processed = Counter(e["payload"]["message_id"] for e in recorded if e["type"] == "message_processed")
    assert list(processed.values()) == [1]
    recovery = [e for e in recorded if e["type"] == "job_recovery_started"]
    assert len(recovery) == 1 and recovery[0]["payload"]["node"] == "node-b"
    assert recovery[0]["payload"]["from_node"] == "node-a"
    # Node A's run was interrupted by nothing: its sandbox_job_completed must not be in the log.
    assert sum(1 for e in recorded if e["type"] == "sandbox_job_completed") == 1
    assert compare_with_api(recorded, details) == []


async def test_api_cancel_of_a_running_step_is_not_a_lost_lease(
    database_url: str, db: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A cancel through another process's API drops the job lease; the step that ends next finds
    its commit refused. The runner must recognise its own job's end: no 'lost the lease' warning,
    which is kept for a take-over by another node (the test above)."""
    manifest = {
        "manifest_version": "1", "graph_id": "cancelled", "entrypoints": ["work"],
        "nodes": [{"node_id": "work", "agent_type": "executor", "config": {"command": "sleep 1"}}],
    }
    # A slow poll: the runner learns of the cancel only from its refused commit.
    node = Node(node_settings(database_url, tmp_path, poll_interval_ms=10_000), db, Service(db))
    api_db = Database(database_url)
    app = create_app(node.settings, api_db, Service(api_db), node_name="api")
    await node.start()
    caplog.set_level(logging.INFO, logger="app.runtime.runner")
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            job_id = (await client.post("/api/v1/jobs", json=manifest)).json()["job_id"]
            node.scheduler.wake()  # the submission came through another process: no wake-up of its own
            while not any(
                e["type"] == "executor_lease_acquired"
                for e in (await client.get(f"/api/v1/jobs/{job_id}/events")).json()["data"]
            ):
                await asyncio.sleep(0.05)
            runner = node.runners[job_id]
            assert (await client.post(f"/api/v1/jobs/{job_id}/cancel")).status_code == 200
            await asyncio.wait_for(runner.done.wait(), timeout=15)
            events = (await client.get(f"/api/v1/jobs/{job_id}/events")).json()["data"]
    finally:
        await node.stop()
        await api_db.dispose()
    assert events[-1]["type"] == "job_cancelled"
    assert not any(e["type"] == "sandbox_job_completed" for e in events)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == []
