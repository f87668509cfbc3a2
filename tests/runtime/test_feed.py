"""The global feed under load: a follower receives every committed job event exactly once."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import select

from app.http.app import create_app
from app.store.tables import events
from tests.runtime.conftest import Harness, load_manifest
from tests.runtime.processes import free_port


async def _all_job_event_ids(harness: Harness) -> list[str]:
    async with harness.db.read() as conn:
        rows = await conn.execute(select(events.c.event_id).where(events.c.job_id.is_not(None)).order_by(events.c.position))
        return [r.event_id for r in rows]


@pytest.mark.parametrize("settings_overrides", [{"max_active_jobs": 200}])
async def test_feed_follower_sees_every_event_once_while_jobs_run(harness: Harness) -> None:
    received: list[dict[str, Any]] = []
    paged: list[dict[str, Any]] = []
    stop = asyncio.Event()

    # A real socket: the in-process ASGI transport buffers whole responses, a follow never ends.
    node = harness.node
    port = free_port()
    config = uvicorn.Config(
        create_app(node.settings, harness.db, node.service, node_name=node.name),
        host="127.0.0.1", port=port, log_level="warning", lifespan="off",
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)

    async def follow() -> None:
        headers = {"Accept": "application/x-ndjson"}
        async with (
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=None) as client,
            client.stream("GET", "/api/v1/events?follow=true", headers=headers) as response,
        ):
            assert response.status_code == 200
            async for line in response.aiter_lines():
                if line.strip():
                    received.append(json.loads(line))

    async def page() -> None:
        after = 0
        while not stop.is_set():
            body = (await harness.client.get(f"/api/v1/events?after={after}&limit=1000")).json()
            paged.extend(body["data"])
            if body["data"]:
                after = body["data"][-1]["position"]
            await asyncio.sleep(0.01)
        body = (await harness.client.get(f"/api/v1/events?after={after}&limit=1000")).json()
        paged.extend(body["data"])

    follower = asyncio.create_task(follow())
    pager = asyncio.create_task(page())
    research = load_manifest("research_flow.json")
    lifecycle = load_manifest("pause_resume.json")
    submitted = await asyncio.gather(
        *(harness.submit(research if i % 2 else lifecycle) for i in range(40)),
        *(harness.submit({"bundle_id": "shell_python_chain_v1"}) for _ in range(4)),
    )
    for job_id in submitted[::2]:
        if (await harness.details(job_id))["job"]["status"] != "completed":
            await harness.client.post(f"/api/v1/jobs/{job_id}/cancel")
    for job_id in submitted:
        status = (await harness.details(job_id))["job"]["status"]
        if status not in ("completed", "failed", "cancelled"):
            await harness.wait_status(job_id, ("running", "completed", "failed", "cancelled"))
            await harness.client.post(f"/api/v1/jobs/{job_id}/cancel")
        await harness.wait_status(job_id)
    committed = await _all_job_event_ids(harness)
    deadline = asyncio.get_running_loop().time() + 20
    while len(received) < len(committed) and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
    stop.set()
    await pager
    follower.cancel()
    await asyncio.gather(follower, return_exceptions=True)
    server.should_exit = True
    await serving
    for seen in (received, paged):
        ids = [e["event_id"] for e in seen]
        assert len(ids) == len(set(ids)), "an event was delivered twice"
        assert ids == committed, "the feed skipped or reordered a committed event"
        positions = [e["position"] for e in seen]
        assert positions == sorted(positions)
