"""Zip archives for the upload tests: a bundle directory zipped as a user would, and hostile archives."""

from __future__ import annotations

import asyncio
import io
import json
import os
import stat
import threading
import time
import zipfile
from pathlib import Path
from typing import Any


def zip_directory(directory: Path, top: str | None = None) -> bytes:
    """`directory` zipped with its files (modes kept), inside `top/` when given, with directory entries."""
    buffer = io.BytesIO()
    prefix = f"{top}/" if top else ""
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        if top:
            archive.writestr(zipfile.ZipInfo(prefix), b"")
        for path in sorted(directory.rglob("*")):
            name = prefix + path.relative_to(directory).as_posix()
            if path.is_dir():
                archive.writestr(zipfile.ZipInfo(name + "/"), b"")
            else:
                archive.write(path, name)
    return buffer.getvalue()


def zip_entries(entries: list[tuple[str | zipfile.ZipInfo, bytes]]) -> bytes:
    """An archive holding exactly these entries, in order."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries:
            archive.writestr(name, data)
    return buffer.getvalue()


def special_entry(name: str, kind: int) -> zipfile.ZipInfo:
    """An entry whose Unix mode says symlink, device, FIFO… (`kind` is a stat.S_IF* constant)."""
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (kind | 0o777) << 16
    return info


def executable_entry(name: str) -> zipfile.ZipInfo:
    """A regular file entry with mode 0755."""
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFREG | 0o755) << 16
    return info


def router_manifest(graph_id: str, **extra: Any) -> bytes:
    """A one-node manifest (a root router)."""
    manifest = {
        "graph_id": graph_id,
        "manifest_version": "1.0",
        "nodes": [{"node_id": "root", "agent_type": "router", "role": "root"}],
        **extra,
    }
    return json.dumps(manifest).encode()


class HeldStep:
    """Holds a step of an upload's worker thread (`app.bundles.uploads.<name>`) until `release()`."""

    def __init__(self, monkeypatch: Any, name: str) -> None:
        from app.bundles import uploads

        self._entered, self._release = threading.Event(), threading.Event()
        step = getattr(uploads, name)

        def held(*args: Any) -> Any:
            self._entered.set()
            assert self._release.wait(10)
            return step(*args)

        monkeypatch.setattr(uploads, name, held)

    async def reached(self) -> None:
        assert await asyncio.to_thread(self._entered.wait, 10), "the upload never reached the held step"

    def release(self) -> None:
        self._release.set()


async def emptied(directory: Path, prefix: str = "", timeout: float = 5.0) -> list[str]:
    """What stays in `directory` (names starting with `prefix`) once it is empty or `timeout` passed."""
    deadline = time.monotonic() + timeout
    while True:
        left = sorted(n for n in os.listdir(directory) if n.startswith(prefix)) if directory.exists() else []
        if not left or time.monotonic() > deadline:
            return left
        await asyncio.sleep(0.02)
