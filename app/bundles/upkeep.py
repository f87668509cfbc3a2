"""Keeping the cache of uploaded bundles bounded and clean (app/bundles/cache.py): at start, every minute."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from app.bundles import cache
from app.bundles.archive import parse_upload_path
from app.store import archives
from app.store.database import Database

log = logging.getLogger(__name__)

UPKEEP_INTERVAL_SECONDS = 60.0


class CacheUpkeep:
    """Sweeps leftovers and evicts versions nobody needs past MIRROR_NEURON_BUNDLE_CACHE_MAX_BYTES."""

    def __init__(self, db: Database, temp_dir: Path, max_bytes: int) -> None:
        self.db = db
        self.temp_dir = temp_dir
        self.max_bytes = max_bytes
        self._sizes: dict[str, int] = {}

    async def once(self) -> list[str]:
        """One pass; returns the evicted fingerprints. Without the database nothing is evicted."""
        swept = await asyncio.to_thread(cache.sweep_leftovers, self.temp_dir)
        if swept:
            log.info(
                "bundle cache: removed %d leftover(s) of interrupted work: %s", len(swept), ", ".join(swept)
            )
        # A job submitted after this read is not in `keep`; its node's use of the version (a touch
        # under the cache's lock, cache.is_cached) either comes first and spares it, or comes after
        # the eviction and finds it missing, and the node materialises it again.
        async with self.db.read() as conn:
            paths = await archives.needed_paths(conn)
        keep = {upload[1] for upload in map(parse_upload_path, paths) if upload is not None}
        evicted = await asyncio.to_thread(cache.evict, self.temp_dir, keep, self.max_bytes, sizes=self._sizes)
        if evicted:
            log.info("bundle cache: evicted %d unused version(s): %s", len(evicted), ", ".join(evicted))
        return evicted

    async def run(self, stop: asyncio.Event) -> None:
        """A pass every UPKEEP_INTERVAL_SECONDS until `stop` is set; a failed pass is logged and retried."""
        while not stop.is_set():
            try:
                await self.once()
            except Exception as exc:
                log.warning("bundle cache upkeep failed: %s", exc)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(UPKEEP_INTERVAL_SECONDS):
                    await stop.wait()
