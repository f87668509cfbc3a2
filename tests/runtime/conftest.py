"""A running node (runtime + HTTP API in one event loop) over the test database."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.config import Settings
from app.http.app import create_app
from app.runtime.node import Node
from app.service import Service
from app.store.database import Database
from app.store.rebuild import verify
from tests.replay import compare_with_api

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
TERMINAL = ("completed", "failed", "cancelled")


@dataclass
class Harness:
    """A node and an HTTP client to its API."""

    client: httpx.AsyncClient
    node: Node
    db: Database

    async def submit(self, body: dict[str, Any]) -> str:
        response = await self.client.post("/api/v1/jobs", json=body)
        assert response.status_code == 201, response.text
        return str(response.json()["job_id"])

    async def details(self, job_id: str) -> dict[str, Any]:
        response = await self.client.get(f"/api/v1/jobs/{job_id}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def events(self, job_id: str) -> list[dict[str, Any]]:
        response = await self.client.get(f"/api/v1/jobs/{job_id}/events")
        assert response.status_code == 200, response.text
        return list(response.json()["data"])

    async def wait_status(self, job_id: str, statuses: tuple[str, ...] = TERMINAL, timeout: float = 60) -> dict[str, Any]:
        """Poll GET /jobs/{id} until its status is one of `statuses`."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            details = await self.details(job_id)
            if details["job"]["status"] in statuses:
                return details
            assert asyncio.get_running_loop().time() < deadline, f"{job_id} stuck in {details['job']['status']}"
            await asyncio.sleep(0.05)

    async def wait_event(self, job_id: str, predicate: Callable[[dict[str, Any]], bool], timeout: float = 30) -> dict[str, Any]:
        """Poll the job's events until one matches."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            for event in await self.events(job_id):
                if predicate(event):
                    return event
            assert asyncio.get_running_loop().time() < deadline, f"no matching event in {job_id}"
            await asyncio.sleep(0.05)

    async def audit(self, job_id: str) -> None:
        """An independent replay of the job's events equals what the API shows."""
        events = await self.events(job_id)
        assert compare_with_api(events, await self.details(job_id)) == []


def node_settings(database_url: str, tmp_path: Path, **overrides: Any) -> Settings:
    """Settings of a test node: fast polling, the examples as bundles."""
    base = Settings(
        database_url=database_url,
        node_name="node-a",
        poll_interval_ms=50,
        heartbeat_seconds=1.0,
        lease_ttl_seconds=4.0,
        bundles_dir=EXAMPLES,
        temp_dir=tmp_path / "staging",
    )
    return replace(base, **overrides)


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Override in a test module (or via indirect parametrisation) to change node settings."""
    return {}


@pytest.fixture
async def harness(
    db: Database, service: Service, database_url: str, tmp_path: Path, settings_overrides: dict[str, Any]
) -> AsyncIterator[Harness]:
    """A started node with its API."""
    settings = node_settings(database_url, tmp_path, **settings_overrides)
    node = Node(settings, db, service)
    await node.start()
    app = create_app(settings, db, service, node_name=node.name)
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=60) as client:
            yield Harness(client, node, db)
    finally:
        await node.stop()
    # Whatever ran, the projections must equal a replay of the log (DESIGN §2 invariant 1).
    assert await verify(db) == []


def load_manifest(name: str) -> dict[str, Any]:
    """A raw manifest from examples/manifests."""
    return dict(json.loads((EXAMPLES / "manifests" / name).read_text()))
