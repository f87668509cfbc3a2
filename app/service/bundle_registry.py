"""Bundle scans and reloads (SPEC §9.2, §9.5, C.2.5): read a bundle directory, then record the outcome through the service."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.bundles import scanner
from app.config import Settings
from app.domain.bundle import BundleVersion
from app.domain.events import Event

if TYPE_CHECKING:
    from app.service.facade import Service

log = logging.getLogger(__name__)


class BundleRegistry:
    """Bundle scans and reloads: read the directory, then record the outcome through the service."""

    def __init__(self, service: Service, settings: Settings, node: str) -> None:
        self.service = service
        self.settings = settings
        self.node = node
        self._reported: set[str] = set()

    def _overrides(self) -> dict[str, Any]:
        return {
            "reload_mode_override": self.settings.bundle_reload_mode,
            "reload_interval_override": self.settings.bundle_reload_interval_seconds,
        }

    async def scan(self) -> list[str]:
        """Startup scan of MIRROR_NEURON_BUNDLES_DIR (SPEC §9.2); returns the log lines of skipped dirs."""
        root = self.settings.bundles_dir
        if root is None:
            return []
        candidates, problems = await asyncio.to_thread(scanner.scan_bundles_dir, root, **self._overrides())
        for candidate in candidates:
            await self.service.scan_bundle(version_of(candidate), self.node)
        return problems

    async def discover(self, registered: set[str]) -> list[Event]:
        """Register the directories whose graph_id is not registered yet (SPEC C.2.5), reason `interval_scan`."""
        root = self.settings.bundles_dir
        if root is None:
            return []
        candidates, problems = await asyncio.to_thread(
            scanner.scan_bundles_dir, root, **self._overrides(), registered=frozenset(registered)
        )
        for line in problems:
            if line not in self._reported:  # a broken directory is reported once, not every tick
                self._reported.add(line)
                log.warning("%s", line)
        recorded: list[Event] = []
        for candidate in candidates:
            recorded += await self.service.discover_bundle(version_of(candidate), "interval_scan", self.node)
        return recorded

    async def register_directory(
        self, bundle_id: str, reason: str
    ) -> tuple[list[Event], list[str] | None] | None:
        """Register the new directory that names an unregistered `bundle_id` (SPEC C.2.5, C.5.5).

        None when no directory names it; the errors if it is invalid (nothing is recorded: an
        unregistered bundle has no stream); no event if another node registered it meanwhile.
        """
        root = self.settings.bundles_dir
        directory = (
            None if root is None else await asyncio.to_thread(scanner.find_bundle_dir, root, bundle_id)
        )
        if directory is None:
            return None
        found = await asyncio.to_thread(
            scanner.read_bundle_dir, directory, expected_bundle_id=bundle_id, **self._overrides()
        )
        if not isinstance(found, scanner.BundleCandidate):
            return [], found.errors
        return await self.service.discover_bundle(version_of(found), reason, self.node), None

    async def reload(self, bundle_id: str, path: str, reason: str) -> tuple[list[Event], list[str] | None]:
        """Re-read a registered bundle (SPEC §9.5); returns the events and the errors if rejected."""
        found = await asyncio.to_thread(
            scanner.read_bundle_dir, Path(path), expected_bundle_id=bundle_id, **self._overrides()
        )
        if isinstance(found, scanner.BundleCandidate):
            recorded = await self.service.reload_bundle(
                bundle_id,
                version=version_of(found),
                fingerprint=found.fingerprint,
                errors=[],
                reason=reason,
                node=self.node,
            )
            return recorded, None
        recorded = await self.service.reload_bundle(
            bundle_id,
            version=None,
            fingerprint=found.fingerprint,
            errors=found.errors,
            reason=reason,
            node=self.node,
        )
        return recorded, found.errors


def version_of(candidate: scanner.BundleCandidate) -> BundleVersion:
    """The version a valid bundle directory (or upload) offers."""
    return BundleVersion(
        bundle_id=candidate.bundle_id,
        path=candidate.path,
        fingerprint=candidate.fingerprint,
        manifest=candidate.manifest,
        reload=candidate.reload,
        payload_files=tuple(candidate.payload_files),
    )
