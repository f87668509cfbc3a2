"""API fixtures: an HTTP client over `create_app` on both backends, and helpers that drive jobs
through the runtime's own commands (Appendix B.21) so that tests reach `running` without a runtime.

The client is an httpx client over the ASGI app in the test's own event loop: Litestar's
AsyncTestClient runs the app in a separate thread and loop (a blocking portal), where the
asyncpg connections of the `db` fixture cannot be used.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, insert, select, update

from app.bundles.scanner import BundleCandidate, read_bundle_dir
from app.config import Settings
from app.domain.bundle import BundleVersion
from app.domain.canonical import format_ms
from app.domain.events import NewEvent
from app.domain.job import AdmitJob, CommitStep, RecordAgentEvents, StartJob
from app.domain.manifest import seed_payloads
from app.domain.messages import message_id_from_bytes, normalize_message, received_payload
from app.http.app import create_app
from app.service import Service
from app.store import event_store, leases
from app.store.database import Database
from app.store.leases import Fence
from app.store.rebuild import verify
from app.store.tables import events, job_leases

NODE = "test-node"
INCARNATION = "00000000-0000-4000-8000-000000000001"
TTL_MS = 60_000
BASE = "/api/v1"

ClientFactory = Callable[..., Awaitable[httpx.AsyncClient]]


@pytest.fixture
async def make_client(db: Database, service: Service) -> AsyncIterator[ClientFactory]:
    """Build clients over apps with custom settings (token, body limit, another database)."""
    opened: list[httpx.AsyncClient] = []

    async def build(
        settings: Settings | None = None, *, database: Database | None = None, node_name: str = NODE
    ) -> httpx.AsyncClient:
        target = database or db
        app = create_app(
            settings or Settings(),
            target,
            service if database is None else Service(target),
            node_name=node_name,
        )
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")
        opened.append(client)
        return client

    yield build
    for client in opened:
        await client.aclose()
    # Whatever a test did through the API, the projections must equal a replay of the log.
    assert await verify(db) == []


@pytest.fixture
async def client(make_client: ClientFactory) -> httpx.AsyncClient:
    """A client over `create_app(Settings(), db, service, node_name="test-node")`."""
    return await make_client()


# ------------------------------------------------------------------------------------ manifests


def lifecycle_manifest(
    graph_id: str = "pause_resume_test", *, sink_config: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The §13.5 manifest: a root router and a sink aggregator, no edges."""
    return {
        "graph_id": graph_id,
        "manifest_version": "1.0",
        "nodes": [
            {
                "node_id": "root",
                "agent_type": "router",
                "type": "generic",
                "role": "root_coordinator",
                "config": {"emit_type": "manual_result"},
            },
            {
                "node_id": "sink",
                "agent_type": "aggregator",
                "type": "generic",
                "config": sink_config if sink_config is not None else {"complete_on_message": True},
            },
        ],
        "edges": [],
    }


def executor_manifest(graph_id: str = "exec_graph") -> dict[str, Any]:
    """A root router feeding two executors (for executor counters and sandboxes)."""
    return {
        "graph_id": graph_id,
        "manifest_version": "1.0",
        "nodes": [
            {"node_id": "root", "agent_type": "router", "role": "root"},
            {"node_id": "worker_b", "agent_type": "executor", "config": {"command": "true"}},
            {"node_id": "worker_a", "agent_type": "executor", "config": {"command": "true"}},
        ],
    }


# ------------------------------------------------------------------------------------ jobs


async def submit(client: httpx.AsyncClient, body: dict[str, Any], **headers: str) -> str:
    """Submit a body that must be accepted; returns the job id."""
    response = await client.post(f"{BASE}/jobs", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return str(response.json()["job_id"])


async def submitted_manifest(db: Database, job_id: str) -> dict[str, Any]:
    """The normalised manifest recorded in `job_submitted`."""
    async with db.read() as conn:
        first = await event_store.read_stream(conn, job_id, limit=1)
    return dict(first[0].payload["manifest"])


def new_message_id() -> str:
    """A fresh §6.1 message id."""
    return message_id_from_bytes(os.urandom(10))


async def seeds(db: Database, job_id: str) -> tuple[dict[str, Any], ...]:
    """The bootstrap seed messages of a job, normalised as the runtime does (§3.7 step 2)."""
    manifest = await submitted_manifest(db, job_id)
    now = format_ms(1_700_000_000_000)
    return tuple(
        normalize_message(
            payload,
            message_id=new_message_id(),
            job_id=job_id,
            to=entrypoint,
            timestamp=now,
            correlation_id=str(uuid.uuid4()),
            default_from="runtime",
            default_type="init",
            default_class="command",
        )
        for entrypoint, payloads in seed_payloads(manifest)
        for payload in payloads
    )


@dataclass
class Running:
    """A job the test runs as its owner."""

    job_id: str
    fence: Fence
    seeds: tuple[dict[str, Any], ...]


async def admit(service: Service, job_id: str) -> None:
    """pending → queued, as a runtime node's admission."""
    await service.execute(job_id, AdmitJob(NODE))


async def start(db: Database, service: Service, job_id: str, *, ttl_ms: int = TTL_MS) -> Running:
    """queued → running: claim the job lease, then bootstrap with the seed messages."""
    now = service.clock()
    async with db.write() as conn:
        fence = await leases.claim(
            conn, job_id, node=NODE, incarnation=INCARNATION, now_ms=now, ttl_ms=ttl_ms
        )
    assert fence is not None
    messages = await seeds(db, job_id)
    await service.execute(job_id, StartJob(NODE, messages), fence)
    return Running(job_id, fence, messages)


async def run(db: Database, service: Service, job_id: str) -> Running:
    """pending → queued → running."""
    await admit(service, job_id)
    return await start(db, service, job_id)


async def process(
    service: Service, job: Running, agent_id: str, message: dict[str, Any], *, processed: int
) -> None:
    """One successful step of an agent on a message: received, then processed."""
    received = NewEvent("agent_message_received", received_payload(message), agent_id)
    await service.execute(job.job_id, RecordAgentEvents(agent_id, (received,)), job.fence)
    step = CommitStep(agent_id, message["envelope"]["message_id"], processed, {"seen": processed + 1})
    await service.execute(job.job_id, step, job.fence)


async def expire_lease(db: Database, job_id: str) -> None:
    """Let a job's lease run out, as when its owner died."""
    async with db.write() as conn:
        await conn.execute(update(job_leases).where(job_leases.c.job_id == job_id).values(expires_at_ms=1))


async def event_count(db: Database) -> int:
    """Number of rows in the events table."""
    async with db.read() as conn:
        return int((await conn.execute(select(func.count()).select_from(events))).scalar_one())


async def job_events(client: httpx.AsyncClient, job_id: str) -> list[dict[str, Any]]:
    """Every event of a job over the API."""
    response = await client.get(f"{BASE}/jobs/{job_id}/events")
    assert response.status_code == 200, response.text
    return list(response.json()["data"])


def labels(recorded: list[dict[str, Any]]) -> list[str]:
    """Events as `type(agent)` / `type` labels."""
    return [f"{e['type']}({e['agent_id']})" if e["agent_id"] else e["type"] for e in recorded]


# ------------------------------------------------------------------------------------ bundles


def write_bundle(
    root: Path, name: str, manifest: dict[str, Any], files: dict[str, str] | None = None
) -> Path:
    """A bundle folder with manifest.json and payloads/."""
    directory = root / name
    (directory / "payloads").mkdir(parents=True, exist_ok=True)
    (directory / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    for relative, text in (files or {}).items():
        target = directory / "payloads" / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    return directory


async def register_bundle(service: Service, directory: Path) -> BundleCandidate:
    """Register a bundle folder as the startup scan does."""
    found = read_bundle_dir(directory)
    assert isinstance(found, BundleCandidate), found
    version = BundleVersion(
        found.bundle_id,
        found.path,
        found.fingerprint,
        found.manifest,
        found.reload,
        tuple(found.payload_files),
    )
    await service.scan_bundle(version, NODE)
    return found


# ------------------------------------------------------------------------------------ nodes


async def add_node(
    db: Database,
    name: str,
    *,
    status: str = "alive",
    incarnation: str | None = None,
    pools: dict[str, int] | None = None,
    runtime_enabled: bool = True,
    changed_ms: int | None = None,
    heartbeat_ms: int | None = None,
) -> str:
    """Write a `nodes` row as a runtime node registers itself; returns its incarnation."""
    from app.store.tables import nodes

    now = 1_700_000_000_000 if heartbeat_ms is None else heartbeat_ms
    incarnation = incarnation or str(uuid.uuid4())
    async with db.write() as conn:
        await conn.execute(
            insert(nodes).values(
                name=name,
                incarnation=incarnation,
                status=status,
                started_at_ms=now - 5000,
                last_heartbeat_ms=now,
                status_changed_ms=changed_ms if changed_ms is not None else now,
                api_enabled=True,
                runtime_enabled=runtime_enabled,
                executor_pools=json.dumps(
                    pools if pools is not None else ({"default": 4} if runtime_enabled else {})
                ),
                hardware=json.dumps({"cpu": {"logical_processors": 8, "architecture": "x86_64"}}),
            )
        )
    return incarnation
