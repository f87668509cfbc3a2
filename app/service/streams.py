"""Appends to streams with no projection row (the `system` stream): each with the operational rows it records."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from app.domain.events import Event, NewEvent
from app.ops import lifecycle
from app.service.retry import retried
from app.store import event_store
from app.store.database import Connection, Database

# (command id, request digest) of a keyed request: marks the first event it appends.
Marker = tuple[str, str | None]
Write = Callable[[Connection], Awaitable[Sequence[NewEvent]]]


class OtherStreams:
    """Node lifecycle and audit events: the row writes they record and the events, in one transaction."""

    def __init__(self, db: Database, clock: Callable[[], int]) -> None:
        self.db = db
        self.clock = clock

    async def append_with(self, stream_id: str, write: Write, marker: Marker | None = None) -> list[Event]:
        """Run `write` and append the events it returns to `stream_id`, in one transaction (see `Service`)."""

        async def attempt() -> list[Event]:
            async with self.db.write() as conn:
                new_events = await write(conn)
                return await self._append(conn, stream_id, new_events, marker) if new_events else []

        recorded = await retried(attempt, stream_id)
        lifecycle.committed(stream_id, recorded)
        return recorded

    async def _append(
        self, conn: Connection, stream_id: str, new_events: Sequence[NewEvent], marker: Marker | None
    ) -> list[Event]:
        head = await event_store.stream_head(conn, stream_id)
        sealed = event_store.seal(stream_id, None, head, new_events, self.clock())
        if marker is None:
            return await event_store.insert_sealed(conn, sealed)
        ids = [marker[0] if i == 0 else None for i in range(len(sealed))]
        digests = [marker[1] if i == 0 else None for i in range(len(sealed))]
        return await event_store.insert_sealed(conn, sealed, ids, digests)
