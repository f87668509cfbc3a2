"""A node's start sweeps what interrupted uploads and extractions left in its bundle cache, with a real process."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from app.bundles import cache
from tests.runtime.processes import NodeProcess, wait_for


def test_a_starting_node_removes_old_leftovers_and_keeps_young_ones(
    database_url: str, db: Any, tmp_path: Path
) -> None:
    root = cache.cache_root(tmp_path / "staging")
    for name in (".upload-crashed", ".partial-crashed", ".upload-in-progress"):
        (root / name / "payloads").mkdir(parents=True)
        (root / name / "manifest.json").write_text("{}")
    two_hours_ago = time.time() - 7200
    for name in (".upload-crashed", ".partial-crashed"):
        os.utime(root / name, (two_hours_ago, two_hours_ago))
    node = NodeProcess("sweeping", database_url, tmp_path).start()
    try:
        wait_for(
            lambda: sorted(os.listdir(root)) == [".upload-in-progress"],
            30,
            f"the sweep: {os.listdir(root)}",
        )
        assert "removed 2 leftover(s) of interrupted work" in node.log_text()
    finally:
        assert node.stop() == 0
