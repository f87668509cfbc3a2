"""A node's background loops end when they are cancelled, whatever they were waiting for.

Python 3.11's `asyncio.wait_for` returns the inner result when the inner await finishes in the
same loop iteration as the outer task's cancellation, swallowing the cancel. A heartbeat loop
built on it kept running after `Node.stop()` cancelled it, and `stop()` waited for it forever
(a test teardown hung on it). These tests cancel each loop at exactly that moment.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from app.runtime.node import Node
from app.service import Service
from app.store.database import Database
from tests.runtime.conftest import node_settings


async def _cancelled_at_completion(loop_task: asyncio.Task[None], release: asyncio.Future[None]) -> None:
    """Complete what the loop awaits and cancel it in the same iteration; it must end."""
    await asyncio.sleep(0.05)  # the loop is inside its timed await
    release.set_result(None)
    loop_task.cancel()
    done, _ = await asyncio.wait([loop_task], timeout=5)
    assert done, "the loop swallowed its cancellation and kept running"
    assert loop_task.cancelled()


async def test_heartbeat_loop_ends_when_cancelled_as_a_heartbeat_completes(
    db: Database, service: Service, database_url: str, tmp_path: Path
) -> None:
    node = Node(node_settings(database_url, tmp_path), db, service)
    release: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    heartbeats = 0

    async def heartbeat() -> None:
        nonlocal heartbeats
        heartbeats += 1
        await release

    node.membership.beat = heartbeat  # type: ignore[method-assign]
    task = asyncio.create_task(node.membership.run())
    await _cancelled_at_completion(task, release)
    assert heartbeats == 1


async def test_schedule_loop_ends_when_cancelled_as_it_is_woken(
    db: Database, service: Service, database_url: str, tmp_path: Path
) -> None:
    node = Node(node_settings(database_url, tmp_path, poll_interval_ms=60_000), db, service)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        ticks += 1

    node.scheduler.tick = tick  # type: ignore[method-assign]
    task = asyncio.create_task(node.scheduler.run())
    await asyncio.sleep(0.05)
    node.scheduler.wake()
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=5)
    assert done, "the loop swallowed its cancellation and kept running"
    assert task.cancelled()
    assert ticks == 0
