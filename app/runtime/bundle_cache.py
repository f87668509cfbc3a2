"""Uploaded bundle versions on this node (SPEC C.2.3): materialised from the database once per fingerprint."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from app.bundles import cache
from app.bundles.archive import ArchiveRefused, parse_upload_path
from app.store import archives
from app.store.database import Database


class BundleUnavailable(Exception):
    """An uploaded version cannot be materialised here; the message is the bootstrap error."""


class BundleCache:
    """Materialises the uploaded versions this node's jobs need into MIRROR_NEURON_TEMP_DIR."""

    def __init__(self, db: Database, temp_dir: Path, node_name: str) -> None:
        self.db = db
        self.temp_dir = temp_dir
        self.node_name = node_name
        # One extraction per version at a time in this process; other processes are kept apart by
        # the rename that publishes a version (app/bundles/cache.py).
        self._locks: dict[str, asyncio.Lock] = {}

    async def ensure(self, bundle: dict[str, Any] | None) -> None:
        """Make a job's uploaded version present on this node (directory bundles: nothing to do)."""
        if bundle is None:
            return
        upload = parse_upload_path(bundle.get("path"))
        if upload is None:
            return
        fingerprint = upload[1]
        if cache.is_cached(self.temp_dir, fingerprint):
            return
        async with self._locks.setdefault(fingerprint, asyncio.Lock()):
            if cache.is_cached(self.temp_dir, fingerprint):
                return
            async with self.db.read() as conn:
                stored = await archives.archive(conn, fingerprint)
            if stored is None:
                raise BundleUnavailable(f"bundle path does not exist on node {self.node_name}: {bundle['path']}")
            try:
                await asyncio.to_thread(
                    cache.materialise, stored.archive, self.temp_dir, fingerprint, stored.expanded_bytes
                )
            except ArchiveRefused as exc:
                raise BundleUnavailable(f"stored bundle archive {fingerprint} cannot be extracted: {exc}") from None
