"""Uploaded bundles on a running node (SPEC C.2.3–C.2.5): materialised from the database, versions kept apart."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete

from app.bundles.cache import cache_root
from app.runtime import bundle_scanner
from app.store.tables import bundle_archives
from tests.api.conftest import write_bundle
from tests.bundle_zips import executable_entry, zip_entries
from tests.runtime.conftest import Harness


@pytest.fixture
def settings_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """An empty bundles directory, scanned for new bundles every 50 ms instead of every 5 s."""
    monkeypatch.setattr(bundle_scanner, "BUNDLE_TICK_SECONDS", 0.05)
    (tmp_path / "bundles").mkdir()
    return {"bundles_dir": tmp_path / "bundles"}


def reader_bundle(gate: Path, text: str) -> bytes:
    """A bundle whose executor waits for `gate` to exist, then prints its payload file `data.txt`."""
    manifest = {
        "manifest_version": "1.0",
        "graph_id": "versioned",
        "entrypoints": ["reader"],
        "initial_inputs": {"reader": [{"n": 1}]},
        "nodes": [
            {
                "node_id": "reader",
                "agent_type": "executor",
                "config": {"upload_paths": ["read.sh", "data.txt"], "command": ["./read.sh", str(gate)], "complete_job": True},
            }
        ],
    }
    script = b'#!/bin/bash\nwhile [ ! -e "$1" ]; do sleep 0.02; done\ncat data.txt\n'
    return zip_entries(
        [
            ("versioned/manifest.json", json.dumps(manifest).encode()),
            (executable_entry("versioned/payloads/read.sh"), script),
            ("versioned/payloads/data.txt", text.encode()),
        ]
    )


async def upload(harness: Harness, data: bytes) -> dict[str, Any]:
    response = await harness.client.post("/api/v1/bundles/upload", files={"bundle": ("b.zip", data, "application/zip")})
    assert response.status_code == 200, response.text
    return dict(response.json())


def stdout(details: dict[str, Any]) -> str:
    assert details["job"]["status"] == "completed", details["job"]["result"]
    return str(details["job"]["result"]["output"]["sandbox"]["stdout"])


async def test_running_jobs_keep_their_version_new_jobs_take_the_new_one(harness: Harness, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    first = await upload(harness, reader_bundle(gate, "version one"))
    old = await harness.submit({"_bundle_path": first["bundle_path"]})
    await harness.wait_event(old, lambda e: e["type"] == "executor_lease_acquired")  # its attempt is under way
    second = await upload(harness, reader_bundle(gate, "version two"))
    assert second["changed"] is True
    new = await harness.submit({"bundle_id": "versioned"})
    gate.touch()
    assert stdout(await harness.wait_status(old)) == "version one"
    assert stdout(await harness.wait_status(new)) == "version two"
    cache = cache_root(harness.node.settings.temp_dir)
    assert sorted(p.name for p in cache.iterdir()) == sorted([first["fingerprint"], second["fingerprint"]])
    await harness.audit(old)
    await harness.audit(new)


async def test_two_jobs_of_one_new_version_share_one_materialisation(harness: Harness, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    gate.touch()
    body = await upload(harness, reader_bundle(gate, "shared"))
    cache = cache_root(harness.node.settings.temp_dir)
    for entry in cache.iterdir():  # as on a node that has never seen this version
        await asyncio.to_thread(shutil.rmtree, entry)
    jobs = [await harness.submit({"_bundle_path": body["bundle_path"]}) for _ in range(2)]
    for job_id in jobs:
        assert stdout(await harness.wait_status(job_id)) == "shared"
    assert [p.name for p in cache.iterdir()] == [body["fingerprint"]]  # one copy, no partial left over


async def test_module_agents_import_from_the_uploaded_payloads(harness: Harness) -> None:
    agent = (
        "class Doubler:\n"
        "    def init(self, config, context):\n"
        "        return {'payloads': context['payloads_path']}\n"
        "    def handle(self, state, message, context):\n"
        "        return state, [{'action': 'complete_job', 'result': {'doubled': message['body']['n'] * 2}}]\n"
    )
    manifest = {
        "manifest_version": "1.0",
        "graph_id": "uploaded_module",
        "entrypoints": ["m"],
        "initial_inputs": {"m": [{"n": 21}]},
        "nodes": [{"node_id": "m", "agent_type": "module", "config": {"module": "mn_uploaded_pkg.doubler:Doubler"}}],
    }
    body = await upload(
        harness,
        zip_entries(
            [
                ("manifest.json", json.dumps(manifest).encode()),
                ("payloads/mn_uploaded_pkg/__init__.py", b""),
                ("payloads/mn_uploaded_pkg/doubler.py", agent.encode()),
            ]
        ),
    )
    job_id = await harness.submit({"_bundle_path": body["bundle_path"]})
    details = await harness.wait_status(job_id)
    assert details["job"]["result"] == {"agent_id": "m", "output": {"doubled": 42}}


async def test_the_interval_scanner_registers_new_directories(harness: Harness, tmp_path: Path) -> None:
    assert (await harness.client.get("/api/v1/bundles/arrived")).status_code == 404
    manifest = {
        "manifest_version": "1.0",
        "graph_id": "arrived",
        "nodes": [{"node_id": "root", "agent_type": "router", "role": "root"}],
    }
    write_bundle(tmp_path / "bundles", "arrived", manifest)
    deadline = asyncio.get_running_loop().time() + 30
    while (response := await harness.client.get("/api/v1/bundles/arrived")).status_code == 404:
        assert asyncio.get_running_loop().time() < deadline, "the new directory was never registered"
        await asyncio.sleep(0.05)
    detail = response.json()
    assert detail["path"] == str(tmp_path / "bundles" / "arrived")
    assert detail["history"] == [
        {"version": 1, "event": "bundle_registered", "fingerprint": detail["fingerprint"],
         "timestamp": detail["registered_at"], "reason": "interval_scan"}
    ]
    assert detail["reload"]["mode"] == "manual"  # registered whatever the reload mode


async def test_a_version_missing_from_the_database_fails_bootstrap(harness: Harness, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    body = await upload(harness, reader_bundle(gate, "gone"))
    async with harness.db.write() as conn:  # an operator deleted the row by hand
        await conn.execute(delete(bundle_archives))
    shutil.rmtree(cache_root(harness.node.settings.temp_dir) / body["fingerprint"])
    job_id = await harness.submit({"bundle_id": "versioned"})
    details = await harness.wait_status(job_id)
    assert details["job"]["status"] == "failed"
    assert details["job"]["result"]["error"] == f"bundle path does not exist on node node-a: {body['bundle_path']}"
