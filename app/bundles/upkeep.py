"""Keeping a node's cache of uploaded bundles clean (app/bundles/cache.py), at start and every minute."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from app.bundles import cache

log = logging.getLogger(__name__)

UPKEEP_INTERVAL_SECONDS = 60.0


class CacheUpkeep:
    """Sweeps what interrupted uploads and extractions left in the cache."""

    def __init__(self, temp_dir: Path) -> None:
        self.temp_dir = temp_dir

    async def once(self) -> None:
        """One pass."""
        swept = await asyncio.to_thread(cache.sweep_leftovers, self.temp_dir)
        if swept:
            log.info(
                "bundle cache: removed %d leftover(s) of interrupted work: %s", len(swept), ", ".join(swept)
            )

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
