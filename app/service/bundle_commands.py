"""Bundle commands (SPEC §9): scan, discovery, upload and reload, each decided on the bundle's view and recorded on its stream."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from app.domain import events as ev
from app.domain.bundle import (
    BundleVersion,
    decide_discovery,
    decide_reload,
    decide_scan,
    decide_upload,
    from_upload,
    project_bundle,
)
from app.domain.canonical import format_ms
from app.domain.events import Event, NewEvent
from app.ops import lifecycle
from app.service.retry import retried
from app.store import archives, event_store
from app.store import bundles as bundle_rows
from app.store.database import Connection, Database
from app.store.event_store import StreamHead

log = logging.getLogger(__name__)

Decision = Callable[[dict[str, Any] | None], list[NewEvent]]


class BundleCommands:
    """Writes the `bundle:<id>` streams and their `bundles` rows, one transaction per command."""

    def __init__(self, db: Database, clock: Callable[[], int]) -> None:
        self.db = db
        self.clock = clock

    async def scan_bundle(self, version: BundleVersion, node: str) -> list[Event]:
        """Register or update a bundle found by the startup scan (never over an uploaded version)."""

        def decision(view: dict[str, Any] | None) -> list[NewEvent]:
            if from_upload(view):
                log.info(
                    "bundle directory %s not registered: bundle %s runs an uploaded version",
                    version.path,
                    version.bundle_id,
                )
            return decide_scan(view, version, node)

        return await self._command(version.bundle_id, decision)

    async def discover_bundle(self, version: BundleVersion, reason: str, node: str) -> list[Event]:
        """Register a bundle directory found after start (SPEC C.2.5); nothing if the id is registered."""
        return await self._command(
            version.bundle_id, lambda view: decide_discovery(view, version, reason, node)
        )

    async def upload_bundle(
        self, version: BundleVersion, archive: bytes, expanded_bytes: int, node: str
    ) -> list[Event]:
        """Store an uploaded version's archive and record it (SPEC C.2.2), in one transaction.

        The archive row is written even when no event is (its fingerprint is the current
        version's, from a directory): the upload's `bundle_path` must name a stored version.
        """

        async def store(conn: Connection) -> None:
            await archives.insert(
                conn,
                fingerprint=version.fingerprint,
                bundle_id=version.bundle_id,
                manifest=version.manifest,
                payload_files=list(version.payload_files),
                archive=archive,
                expanded_bytes=expanded_bytes,
                created_at=format_ms(self.clock()),
            )

        return await self._command(
            version.bundle_id, lambda view: decide_upload(view, version, node), first=store
        )

    async def reload_bundle(
        self,
        bundle_id: str,
        *,
        version: BundleVersion | None,
        fingerprint: str | None,
        errors: list[str],
        reason: str,
        node: str,
    ) -> list[Event]:
        """Record the outcome of a reload (SPEC §9.5); no event when nothing changed."""

        def decision(view: dict[str, Any] | None) -> list[NewEvent]:
            assert view is not None
            return decide_reload(
                view, version=version, fingerprint=fingerprint, errors=errors, reason=reason, node=node
            )

        return await self._command(bundle_id, decision)

    async def _command(
        self, bundle_id: str, decision: Decision, first: Callable[[Connection], Awaitable[None]] | None = None
    ) -> list[Event]:
        stream_id = ev.bundle_stream(bundle_id)

        async def attempt() -> list[Event]:
            async with self.db.write() as conn:
                if first is not None:
                    await first(conn)
                return await self._decide_and_append(conn, bundle_id, stream_id, decision)

        recorded = await retried(attempt, stream_id)
        lifecycle.committed(stream_id, recorded)
        return recorded

    async def _decide_and_append(
        self, conn: Connection, bundle_id: str, stream_id: str, decision: Decision
    ) -> list[Event]:
        """Load the row (locked), decide, seal, fold, save the row, insert the events (last: positions)."""
        row = await bundle_rows.load_locked(conn, bundle_id)
        view = None if row is None else row.view
        new_events = decision(view)
        if not new_events:
            return []
        head = StreamHead() if row is None else row.head
        sealed = event_store.seal(stream_id, None, head, new_events, self.clock())
        for event in sealed:
            view = project_bundle(view, event)
        assert view is not None
        await bundle_rows.save(conn, bundle_id, view, sealed[-1], new=row is None)
        return await event_store.insert_sealed(conn, sealed)
