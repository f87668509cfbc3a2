"""Bundle routes: list, details, reload (SPEC §2.16–§2.18, §9.5, §9.6)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import httpx

from app.config import Settings
from app.service import Service
from app.store import event_store
from app.store.database import Database
from tests.api.conftest import BASE, NODE, ClientFactory, event_count, register_bundle, write_bundle


def _manifest(graph_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "graph_id": graph_id,
        "manifest_version": "1.0",
        "nodes": [{"node_id": "root", "agent_type": "router", "role": "root"}],
        **extra,
    }


async def _bundle_events(db: Database, bundle_id: str) -> list[Any]:
    async with db.read() as conn:
        return await event_store.read_stream(conn, f"bundle:{bundle_id}")


async def test_list_and_details(client: httpx.AsyncClient, service: Service, tmp_path: Path) -> None:
    assert (await client.get(f"{BASE}/bundles")).json() == {"data": []}
    zeta = await register_bundle(service, write_bundle(tmp_path, "z", _manifest("zeta", job_name="Zeta")))
    alpha = await register_bundle(service, write_bundle(tmp_path, "a", _manifest("alpha"), {"x/y.txt": "1"}))
    listed = (await client.get(f"{BASE}/bundles")).json()["data"]
    assert [b["bundle_id"] for b in listed] == ["alpha", "zeta"]
    summary = listed[1]
    assert set(summary) == {
        "bundle_id",
        "graph_id",
        "job_name",
        "manifest_version",
        "path",
        "fingerprint",
        "version",
        "registered_at",
        "last_reloaded",
        "reload",
        "last_reload_error",
    }
    assert summary["graph_id"] == "zeta" and summary["job_name"] == "Zeta" and summary["path"] == zeta.path
    assert summary["fingerprint"] == zeta.fingerprint and summary["version"] == 1
    assert summary["registered_at"] == summary["last_reloaded"]
    assert summary["reload"] == {"mode": "manual", "interval_seconds": 60}
    assert summary["last_reload_error"] is None
    detail = (await client.get(f"{BASE}/bundles/alpha")).json()
    assert detail["manifest"] == alpha.manifest
    assert detail["payload_files"] == ["x/y.txt"]
    assert detail["history"] == [
        {
            "version": 1,
            "event": "bundle_registered",
            "fingerprint": alpha.fingerprint,
            "timestamp": detail["registered_at"],
            "reason": "startup_scan",
        }
    ]
    missing = await client.get(f"{BASE}/bundles/nope")
    assert missing.status_code == 404
    assert missing.json() == {"error": "Bundle nope not found"}


async def test_reload_unchanged(
    client: httpx.AsyncClient, db: Database, service: Service, tmp_path: Path
) -> None:
    await register_bundle(service, write_bundle(tmp_path, "d", _manifest("demo")))
    before = await event_count(db)
    response = await client.post(f"{BASE}/bundles/demo/reload")
    assert response.status_code == 200
    assert response.json() == {
        "bundle_id": "demo",
        "changed": False,
        "reloaded": False,
        "message": "No bundle changes detected",
    }
    assert await event_count(db) == before


async def test_reload_changed_and_valid(
    client: httpx.AsyncClient, db: Database, service: Service, tmp_path: Path
) -> None:
    directory = write_bundle(tmp_path, "d", _manifest("demo"))
    first = await register_bundle(service, directory)
    (directory / "payloads" / "data.csv").write_text("a,b\n", encoding="utf-8")
    response = await client.post(
        f"{BASE}/bundles/demo/reload", content=b"ignored body", headers={"content-type": "text/plain"}
    )
    assert response.status_code == 200
    body = response.json()
    events = await _bundle_events(db, "demo")
    assert events[-1].type == "bundle_reloaded"
    assert events[-1].payload["reason"] == "api_request" and events[-1].payload["node"] == NODE
    assert body == {
        "bundle_id": "demo",
        "changed": True,
        "reloaded": True,
        "previous_fingerprint": first.fingerprint,
        "current_fingerprint": events[-1].payload["current_fingerprint"],
        "reason": "api_request",
        "message": "Bundle reloaded successfully",
        "timestamp": events[-1].timestamp,
    }
    assert body["current_fingerprint"] != first.fingerprint
    detail = (await client.get(f"{BASE}/bundles/demo")).json()
    assert detail["version"] == 2 and detail["fingerprint"] == body["current_fingerprint"]
    assert detail["payload_files"] == ["data.csv"]
    assert [h["event"] for h in detail["history"]] == ["bundle_registered", "bundle_reloaded"]
    assert detail["history"][-1]["reason"] == "api_request"
    assert detail["last_reloaded"] == body["timestamp"]


async def test_reload_changed_and_invalid_keeps_the_version(
    client: httpx.AsyncClient, db: Database, service: Service, tmp_path: Path
) -> None:
    directory = write_bundle(tmp_path, "d", _manifest("demo"))
    first = await register_bundle(service, directory)
    (directory / "manifest.json").write_text(json.dumps({"graph_id": "other", "nodes": []}), encoding="utf-8")
    response = await client.post(f"{BASE}/bundles/demo/reload")
    assert response.status_code == 422
    expected_errors = [
        "manifest_version is required",
        "nodes must not be empty",
        "manifest must define at least one entrypoint or one node with role root/root_coordinator",
        'graph_id "other" does not match bundle_id "demo"',
    ]
    assert response.json() == {"error": "Manifest validation failed", "errors": expected_errors}
    events = await _bundle_events(db, "demo")
    assert events[-1].type == "bundle_reload_rejected"
    assert events[-1].payload["errors"] == expected_errors
    detail = (await client.get(f"{BASE}/bundles/demo")).json()
    assert detail["fingerprint"] == first.fingerprint and detail["version"] == 1
    assert detail["last_reload_error"] == {
        "timestamp": events[-1].timestamp,
        "fingerprint": events[-1].payload["fingerprint"],
        "errors": expected_errors,
    }
    submitted = await client.post(f"{BASE}/jobs", json={"bundle_id": "demo"})
    assert submitted.status_code == 201


async def test_reload_of_a_vanished_folder(
    client: httpx.AsyncClient, service: Service, tmp_path: Path
) -> None:
    directory = write_bundle(tmp_path, "d", _manifest("demo"))
    found = await register_bundle(service, directory)
    shutil.rmtree(directory)
    response = await client.post(f"{BASE}/bundles/demo/reload")
    assert response.status_code == 422
    assert response.json() == {
        "error": "Manifest validation failed",
        "errors": [f"job folder is missing manifest.json: {found.path}/manifest.json"],
    }
    assert (await client.get(f"{BASE}/bundles/demo")).json()["fingerprint"] == found.fingerprint


async def test_reload_unknown_bundle(client: httpx.AsyncClient, db: Database) -> None:
    response = await client.post(f"{BASE}/bundles/ghost/reload")
    assert response.status_code == 404
    assert response.json() == {"error": "Bundle ghost not found"}
    assert await event_count(db) == 0


async def test_reload_applies_the_configured_overrides(
    make_client: ClientFactory, service: Service, tmp_path: Path
) -> None:
    directory = write_bundle(tmp_path, "d", _manifest("demo"))
    await register_bundle(service, directory)
    client = await make_client(Settings(bundle_reload_mode="interval", bundle_reload_interval_seconds=30))
    (directory / "payloads" / "new.txt").write_text("x", encoding="utf-8")
    assert (await client.post(f"{BASE}/bundles/demo/reload")).json()["reloaded"] is True
    detail = (await client.get(f"{BASE}/bundles/demo")).json()
    assert detail["reload"] == {"mode": "interval", "interval_seconds": 30}
