"""Health, readiness, nodes and the system summary (SPEC §2.3–§2.6, §10.3)."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import insert

from app.config import Settings
from app.store.database import Database
from app.store.migrate import head_revision
from app.store.tables import executor_leases, job_leases
from tests.api.conftest import BASE, NODE, ClientFactory, add_node, lifecycle_manifest, run, submit
from tests.conftest import create_pg_database, drop_pg_database

pytestmark = pytest.mark.asyncio


async def test_health_is_ok_without_database_or_token(make_client: ClientFactory) -> None:
    unreachable = Database("postgresql+asyncpg://nobody:secret@127.0.0.1:1/nowhere")
    client = await make_client(Settings(api_token="s3cret"), database=unreachable)
    response = await client.get(f"{BASE}/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response.headers["content-type"].startswith("application/json")
    await unreachable.dispose()


async def test_ready_when_migrated(client: httpx.AsyncClient) -> None:
    response = await client.get(f"{BASE}/health/ready")
    assert response.status_code == 200
    assert response.json() == {"status": "ready"}


@pytest.fixture
async def unmigrated(backend: str, tmp_path: Path) -> AsyncIterator[Database]:
    """A reachable database that was never migrated, on the current backend."""
    if backend == "sqlite":
        database = Database(f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}")
        yield database
        await database.dispose()
        return
    name, url = await create_pg_database("mn_unmigrated")
    database = Database(url)
    try:
        yield database
    finally:
        await database.dispose()
        await drop_pg_database(name)


async def test_ready_503_when_never_migrated(make_client: ClientFactory, unmigrated: Database) -> None:
    client = await make_client(database=unmigrated)
    response = await client.get(f"{BASE}/health/ready")
    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "error": f"database schema is not at the latest migration (current none, expected {head_revision()})",
    }


@pytest.fixture
async def unreachable(backend: str, tmp_path: Path) -> AsyncIterator[Database]:
    """A database URL that cannot be opened, on the current backend."""
    if backend == "sqlite":
        database = Database(f"sqlite+aiosqlite:///{tmp_path / 'missing-dir' / 'x.db'}")
    else:
        database = Database("postgresql+asyncpg://mnuser:hunter2@127.0.0.1:1/nowhere")
    yield database
    await database.dispose()


async def test_ready_503_when_database_does_not_answer(
    make_client: ClientFactory, unreachable: Database
) -> None:
    client = await make_client(database=unreachable)
    response = await client.get(f"{BASE}/health/ready")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["error"].startswith("database unavailable: ")
    for secret in ("hunter2", "mnuser", "127.0.0.1", "missing-dir"):
        assert secret not in response.text


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/jobs"),
        ("GET", "/jobs/x-1700000000000-000000000000"),
        ("GET", "/jobs/x-1700000000000-000000000000/events"),
        ("GET", "/events"),
        ("GET", "/nodes"),
        ("GET", "/system/summary"),
        ("GET", "/bundles"),
        ("POST", "/jobs/x-1700000000000-000000000000/cancel"),
        ("POST", "/jobs/cleanup"),
    ],
)
async def test_any_route_answers_503_when_database_is_unreachable(
    make_client: ClientFactory, unreachable: Database, method: str, path: str
) -> None:
    client = await make_client(database=unreachable)
    response = await client.request(method, BASE + path)
    assert response.status_code == 503
    assert response.json() == {"error": "database unavailable"}
    assert "hunter2" not in response.text and "127.0.0.1" not in response.text


async def test_submit_answers_503_when_database_is_unreachable(
    make_client: ClientFactory, unreachable: Database
) -> None:
    client = await make_client(database=unreachable)
    response = await client.post(f"{BASE}/jobs", json=lifecycle_manifest())
    assert response.status_code == 503
    assert response.json() == {"error": "database unavailable"}


async def test_nodes_lists_alive_and_recently_gone_nodes(client: httpx.AsyncClient, db: Database) -> None:
    now = int(time.time() * 1000)
    me = await add_node(db, NODE, pools={"default": 4, "gpu": 1}, heartbeat_ms=now)
    other = await add_node(db, "b-node", heartbeat_ms=now, pools={"default": 2})
    await add_node(db, "c-api-only", runtime_enabled=False, heartbeat_ms=now)
    await add_node(db, "a-lost", status="lost", heartbeat_ms=now - 60_000, changed_ms=now - 30_000)
    await add_node(
        db, "old-stopped", status="stopped", heartbeat_ms=now - 7_200_000, changed_ms=now - 3_700_000
    )
    async with db.write() as conn:
        await conn.execute(
            insert(executor_leases),
            [
                _lease(NODE, me, "default", 2, "held"),
                _lease(NODE, me, "default", 1, "held"),
                _lease(NODE, me, "default", 3, "queued"),
                _lease(NODE, "stale-incarnation", "default", 1, "held"),
                _lease("b-node", other, "default", 2, "held"),
            ],
        )
        await conn.execute(
            insert(job_leases),
            [
                _job_lease("j1-1700000000000-000000000001", NODE, me, now + 60_000, False),
                _job_lease("j2-1700000000000-000000000002", NODE, me, now + 60_000, False),
                _job_lease("j3-1700000000000-000000000003", NODE, me, now - 1, False),
                _job_lease("j4-1700000000000-000000000004", NODE, me, now + 60_000, True),
                _job_lease("j5-1700000000000-000000000005", "b-node", other, now + 60_000, False),
            ],
        )
    response = await client.get(f"{BASE}/nodes")
    assert response.status_code == 200
    data = response.json()["data"]
    assert [n["name"] for n in data] == ["a-lost", "b-node", "c-api-only", NODE]
    by_name = {n["name"]: n for n in data}
    mine = by_name[NODE]
    assert mine["self?"] is True and mine["scheduler_hint"] == "cluster_member"
    assert by_name["b-node"]["self?"] is False and by_name["b-node"]["scheduler_hint"] == "remote_member"
    assert mine["connected_nodes"] == ["b-node", "c-api-only", NODE]
    assert mine["executor_pools"] == {
        "default": {"capacity": 4, "in_use": 3, "available": 1, "queued": 1, "active": 2},
        "gpu": {"capacity": 1, "in_use": 0, "available": 1, "queued": 0, "active": 0},
    }
    assert by_name["b-node"]["executor_pools"] == {
        "default": {"capacity": 2, "in_use": 2, "available": 0, "queued": 0, "active": 1}
    }
    assert by_name["c-api-only"]["executor_pools"] == {}
    assert by_name["a-lost"]["executor_pools"] == {}
    assert by_name["a-lost"]["status"] == "lost"
    assert mine["active_jobs"] == 2
    assert by_name["b-node"]["active_jobs"] == 1
    assert mine["status"] == "alive" and mine["api_enabled"] is True and mine["runtime_enabled"] is True
    assert by_name["c-api-only"]["runtime_enabled"] is False
    assert mine["hardware"] == {"cpu": {"logical_processors": 8, "architecture": "x86_64"}}
    assert mine["last_heartbeat_at"].endswith("Z") and len(mine["last_heartbeat_at"]) == 24
    assert mine["started_at"] < mine["last_heartbeat_at"]
    assert set(mine) == {
        "name",
        "status",
        "started_at",
        "last_heartbeat_at",
        "connected_nodes",
        "self?",
        "scheduler_hint",
        "api_enabled",
        "runtime_enabled",
        "active_jobs",
        "executor_pools",
        "hardware",
    }


def _lease(node: str, incarnation: str, pool: str, slots: int, state: str) -> dict[str, object]:
    return {
        "lease_id": str(uuid.uuid4()),
        "node": node,
        "incarnation": incarnation,
        "job_id": "j1-1700000000000-000000000001",
        "agent_id": "worker",
        "pool": pool,
        "slots": slots,
        "state": state,
        "requested_at_ms": 1,
    }


def _job_lease(job_id: str, node: str, incarnation: str, expires: int, released: bool) -> dict[str, object]:
    return {
        "job_id": job_id,
        "node": node,
        "incarnation": incarnation,
        "token": 1,
        "expires_at_ms": expires,
        "released": released,
    }


async def test_system_summary(client: httpx.AsyncClient, db: Database, service: object) -> None:
    from app.service import Service

    assert isinstance(service, Service)
    await add_node(db, NODE, heartbeat_ms=int(time.time() * 1000))
    pending = await submit(client, lifecycle_manifest("g_pending"))
    running = await submit(client, lifecycle_manifest("g_running"))
    await run(db, service, running)
    cancelled = await submit(client, lifecycle_manifest("g_cancelled"))
    assert (await client.post(f"{BASE}/jobs/{cancelled}/cancel")).status_code == 200
    response = await client.get(f"{BASE}/system/summary")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"nodes", "jobs", "jobs_total", "job_counts"}
    assert body["jobs_total"] == 3
    assert body["job_counts"] == {
        "pending": 1,
        "queued": 0,
        "running": 1,
        "paused": 0,
        "completed": 0,
        "failed": 0,
        "cancelled": 1,
    }
    assert [n["name"] for n in body["nodes"]] == [NODE]
    assert body["nodes"] == (await client.get(f"{BASE}/nodes")).json()["data"]
    assert [j["job_id"] for j in body["jobs"]] == [cancelled, running, pending]
    live = {j["job_id"]: j["live?"] for j in body["jobs"]}
    assert live == {pending: True, running: True, cancelled: False}


async def test_system_summary_keeps_the_100_newest_jobs(client: httpx.AsyncClient) -> None:
    ids = [await submit(client, lifecycle_manifest(f"g{i}")) for i in range(103)]
    body = (await client.get(f"{BASE}/system/summary")).json()
    assert body["jobs_total"] == 103
    assert body["job_counts"]["pending"] == 103
    listed = [j["job_id"] for j in body["jobs"]]
    assert len(listed) == 100
    expected = sorted(ids, key=lambda j: (_updated(body, j), j), reverse=True)
    assert listed == [j for j in expected if j in listed]
    assert set(ids) - set(listed) <= set(ids[:3]) | set(ids)  # the oldest ones fall off


def _updated(body: dict[str, object], job_id: str) -> str:
    for j in body["jobs"]:  # type: ignore[attr-defined]
        if j["job_id"] == job_id:
            return str(j["updated_at"])
    return ""
