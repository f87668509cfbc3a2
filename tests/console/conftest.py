"""Fixtures of the console's browser tests: one Chromium per session, a `serve` process per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright, expect

from app.store.database import Database
from tests.console.browser import CHROMIUM, CHROMIUM_ARGS, NODE, TOKEN, Recorder
from tests.runtime.processes import NodeProcess, slow_prime_bundles

# Waiting is bounded, never timed: a loaded CI machine may take a while to show what it must show.
expect.set_options(timeout=30_000)


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        await chromium.close()


@pytest.fixture
def node(database_url: str, db: Database, tmp_path: Path) -> Iterator[NodeProcess]:
    # The prime sweep's workers sleep 2 s first, so the graph shows them busy before completed.
    bundles = slow_prime_bundles(tmp_path / "bundles", 2)
    process = NodeProcess(
        NODE, database_url, tmp_path, MIRROR_NEURON_BUNDLES_DIR=str(bundles), MIRROR_NEURON_API_TOKEN=TOKEN
    ).start()
    yield process
    process.stop()


@pytest.fixture
def recorder(node: NodeProcess, tmp_path: Path) -> Recorder:
    shots = tmp_path / "screenshots"
    shots.mkdir()
    return Recorder(node.url, shots)
