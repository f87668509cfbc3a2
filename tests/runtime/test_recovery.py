"""Recovery semantics (SPEC §8) with two in-process nodes on one database, on SQLite and Postgres."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from app.http.app import create_app
from app.runtime.node import Node
from app.service import Service
from app.store import event_store
from app.store.database import Database
from app.store.tables import nodes
from tests.replay import compare_with_api
from tests.runtime.conftest import node_settings


@dataclass
class Pair:
    a: Node
    b: Node
    client: httpx.AsyncClient
    db: Database

    async def events(self, job_id: str) -> list[dict[str, Any]]:
        return list((await self.client.get(f"/api/v1/jobs/{job_id}/events")).json()["data"])

    async def job(self, job_id: str) -> dict[str, Any]:
        return dict((await self.client.get(f"/api/v1/jobs/{job_id}")).json())

    async def until(self, job_id: str, predicate: Any, timeout: float = 40) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not predicate(await self.events(job_id)):
            assert asyncio.get_running_loop().time() < deadline, " ".join(e["type"] for e in await self.events(job_id))
            await asyncio.sleep(0.05)


@pytest.fixture
async def pair(database_url: str, db: Database, tmp_path: Path) -> AsyncIterator[Pair]:
    db_b = Database(database_url)
    a = Node(node_settings(database_url, tmp_path, node_name="node-a"), db, Service(db))
    b = Node(node_settings(database_url, tmp_path, node_name="node-b"), db_b, Service(db_b))
    await a.start()
    app = create_app(a.settings, db, a.service, node_name="node-a")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        try:
            yield Pair(a, b, client, db)
        finally:
            await b.stop()
            await a.stop()
            await db_b.dispose()


def gated_job(tmp_path: Path, **policies: Any) -> dict[str, Any]:
    """One executor whose first run sleeps long; any re-run finds the gate and finishes at once."""
    gate = tmp_path / "gate"
    command = f"if mkdir {gate} 2>/dev/null; then sleep 30; fi; echo '{{\"complete_job\": {{\"ok\": true}}}}'"
    return {
        "manifest_version": "1", "graph_id": "recovery", "entrypoints": ["work"], "policies": policies,
        "nodes": [{"node_id": "work", "agent_type": "executor", "config": {"command": command}}],
    }


def acquired(events: list[dict[str, Any]]) -> bool:
    return any(e["type"] == "executor_lease_acquired" for e in events)


async def first_run_started(pair: Pair, job_id: str, tmp_path: Path) -> None:
    """Wait until the first run holds its lease and has created the gate (it is now sleeping)."""
    await pair.until(job_id, acquired)
    while not (tmp_path / "gate").exists():
        await asyncio.sleep(0.05)


def freeze(node: Node) -> None:
    """Stop a node's heartbeat and scheduling, as if its VM were paused."""
    for task in node._tasks:
        task.cancel()


async def test_manual_recover_pauses_until_resumed(pair: Pair, tmp_path: Path) -> None:
    job_id = (await pair.client.post("/api/v1/jobs", json=gated_job(tmp_path, recovery_mode="manual_recover"))).json()["job_id"]
    await first_run_started(pair, job_id, tmp_path)
    freeze(pair.a)
    await pair.b.start()
    await pair.until(job_id, lambda es: es[-1]["type"] == "job_paused")
    events = await pair.events(job_id)
    tail = [e["type"] for e in events[-3:]]
    assert tail == ["job_recovery_started", "agent_recovered", "job_paused"]
    assert events[-1]["payload"] == {"reason": "awaiting manual recovery"}
    recovered = events[-2]["payload"]
    assert recovered == {"attempt": 1, "mailbox_depth": 1, "inflight_message_id": recovered["inflight_message_id"]}
    assert recovered["inflight_message_id"] is not None
    details = await pair.job(job_id)
    assert (details["job"]["status"], details["job"]["status_reason"]) == ("paused", "awaiting manual recovery")
    assert details["job"]["node"] == "node-b" and details["job"]["recovery_count"] == 1
    assert (await pair.client.post(f"/api/v1/jobs/{job_id}/resume")).status_code == 200
    await pair.until(job_id, lambda es: es[-1]["type"] == "job_completed")
    details = await pair.job(job_id)
    assert details["job"]["result"] == {"agent_id": "work", "output": {"ok": True}}
    assert compare_with_api(await pair.events(job_id), details) == []


async def test_restart_limit_fails_the_job(pair: Pair, tmp_path: Path) -> None:
    job = gated_job(tmp_path, max_agent_restart_attempts=0)
    job_id = (await pair.client.post("/api/v1/jobs", json=job)).json()["job_id"]
    await first_run_started(pair, job_id, tmp_path)
    freeze(pair.a)
    await pair.b.start()
    await pair.until(job_id, lambda es: es[-1]["type"] == "job_failed")
    last = (await pair.events(job_id))[-1]
    assert last["agent_id"] == "job_coordinator"
    assert last["payload"]["reason"] == f"job {job_id} exceeded restart attempts (0)"
    assert last["payload"]["result"] == {"agent_id": "job_coordinator", "error": f"job {job_id} exceeded restart attempts (0)"}


async def test_graceful_shutdown_hands_the_job_over(pair: Pair, tmp_path: Path) -> None:
    job_id = (await pair.client.post("/api/v1/jobs", json=gated_job(tmp_path))).json()["job_id"]
    await first_run_started(pair, job_id, tmp_path)
    await pair.a.stop()  # SIGTERM path: agents stopped, command killed, lease released
    async with pair.db.read() as conn:
        row = (await conn.execute(select(nodes.c.status).where(nodes.c.name == "node-a"))).one()
        system = await event_store.read_stream(conn, "system")
    assert row.status == "stopped"
    assert system[-1].type == "node_stopped" and system[-1].payload["node"] == "node-a"
    await pair.b.start()
    await pair.until(job_id, lambda es: es[-1]["type"] == "job_completed", timeout=20)
    started = next(e for e in await pair.events(job_id) if e["type"] == "job_recovery_started")
    assert started["payload"]["cause"] == "node_shutdown"
    assert started["payload"]["counted"] is False
    assert started["payload"]["from_node"] == "node-a"


async def test_lost_node_is_detected_once(pair: Pair, tmp_path: Path) -> None:
    freeze(pair.a)
    await pair.b.start()
    deadline = asyncio.get_running_loop().time() + 20
    while True:
        listed = (await pair.client.get("/api/v1/nodes")).json()["data"]
        status = {n["name"]: n["status"] for n in listed}
        if status.get("node-a") == "lost":
            break
        assert asyncio.get_running_loop().time() < deadline, listed
        await asyncio.sleep(0.1)
    await asyncio.sleep(2.5)  # more maintenance ticks: still exactly one node_lost
    async with pair.db.read() as conn:
        system = await event_store.read_stream(conn, "system")
    lost = [e for e in system if e.type == "node_lost"]
    assert len(lost) == 1
    assert lost[0].payload["node"] == "node-a" and lost[0].payload["detected_by"] == "node-b"
    assert status["node-b"] == "alive"
