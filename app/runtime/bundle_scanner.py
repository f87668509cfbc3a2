"""A node's scans of MIRROR_NEURON_BUNDLES_DIR (SPEC §9.2, C.5.5): at start, then every few seconds.

The start-up scan registers every bundle directory; the interval scan registers new directories
and re-reads the bundles whose reload mode is `interval` once their interval has passed. What a
scan finds is recorded through the service's `BundleRegistry`.
"""

from __future__ import annotations

import asyncio
import logging

from app.config import Settings
from app.domain.bundle import from_upload
from app.service import BundleRegistry, Service
from app.store import read_model
from app.store.database import Database, is_unavailable

log = logging.getLogger(__name__)

BUNDLE_TICK_SECONDS = 5.0


class BundleScanner:
    """Registers and reloads the bundle directories of this node's MIRROR_NEURON_BUNDLES_DIR."""

    def __init__(self, settings: Settings, db: Database, service: Service) -> None:
        self.settings = settings
        self.db = db
        self.service = service
        self.bundles = BundleRegistry(service, settings, settings.node_name)
        self._checks: dict[str, int] = {}  # bundle_id → when its interval last started (ms)

    async def scan_at_start(self) -> None:
        """Register every bundle directory; log the directories skipped."""
        for line in await self.bundles.scan():
            log.warning("%s", line)

    async def run(self) -> None:
        """Scan every BUNDLE_TICK_SECONDS until cancelled; a failed scan is logged and the next one tries again."""
        while True:
            await asyncio.sleep(BUNDLE_TICK_SECONDS)
            try:
                await self.reload_due()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not is_unavailable(exc):
                    log.exception("bundle interval scan failed")

    async def reload_due(self) -> None:
        """Register new directories; reload the `interval` bundles whose interval has passed."""
        async with self.db.read() as conn:
            views = await read_model.registered_bundle_views(conn)
        # New directories are registered every tick, whatever the reload mode (SPEC C.5.5).
        await self.bundles.discover({view["bundle_id"] for view in views})
        now = self.service.clock()
        for view in views:
            if from_upload(view):
                continue  # an uploaded version has no directory to re-read; scans never replace it
            mode = self.settings.bundle_reload_mode or view["reload"].get("mode")
            interval = self.settings.bundle_reload_interval_seconds or view["reload"].get("interval_seconds", 60)
            if mode != "interval":
                continue
            last = self._checks.setdefault(view["bundle_id"], now)
            if now - last >= float(interval) * 1000:
                self._checks[view["bundle_id"]] = now
                await self.bundles.reload(view["bundle_id"], view["path"], "interval_scan")
