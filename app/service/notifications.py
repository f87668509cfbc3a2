"""After a commit: the in-process listeners, and the Postgres wake-ups sent to other processes' nodes."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable

from app.domain.events import Event
from app.ops import lifecycle
from app.store import wakeups
from app.store.database import Database

log = logging.getLogger(__name__)

Listener = Callable[[str, list[Event]], None]


class Notifier:
    """Tells what this process committed: its listeners at once, other processes by NOTIFY."""

    def __init__(self, db: Database) -> None:
        self.db = db
        # Names this process in its Postgres wake-up notifications, so that it ignores its own.
        self.origin = secrets.token_hex(8)
        self._listeners: list[Listener] = []
        self._unannounced = wakeups.Wakeup()  # committed, not yet notified (see announce)
        self.announcer: asyncio.Task[None] | None = None

    def subscribe(self, listener: Listener) -> None:
        """Call `listener(stream_id, events)` after every commit made by this process."""
        self._listeners.append(listener)

    def committed(self, stream_id: str, recorded: list[Event]) -> None:
        """Count and log a commit, then tell the listeners and other processes."""
        lifecycle.committed(stream_id, recorded)
        self.tell(stream_id, recorded)

    def tell(self, stream_id: str, recorded: list[Event]) -> None:
        """Tell the listeners, then other processes, what was committed to `stream_id`."""
        for listener in self._listeners:
            try:
                listener(stream_id, recorded)
            except Exception:  # a listener must never undo a committed write
                log.exception("event listener failed")
        self._announce(stream_id, recorded)

    def _announce(self, stream_id: str, recorded: list[Event]) -> None:
        """On Postgres, tell other processes' nodes what a commit gave them to do (app/store/wakeups.py).

        Sent after the commit by a background task, coalescing what commits meanwhile: a
        notification that cannot be sent (a full notification queue, a lost connection) must
        never fail or delay a write; the nodes' polls cover it.
        """
        if not self.db.is_postgres:
            return
        wake = wakeups.wakeup_of([(stream_id, recorded)])
        if not wake:
            return
        self._unannounced.merge(wake)
        if self.announcer is None or self.announcer.done():
            self.announcer = asyncio.get_running_loop().create_task(self._send_announcements())

    async def _send_announcements(self) -> None:
        while self._unannounced:
            wake, self._unannounced = self._unannounced, wakeups.Wakeup()
            try:
                async with self.db.read() as conn:
                    await wakeups.notify(conn, self.origin, wake)
            except Exception as exc:
                log.debug("could not send a wake-up notification: %s", type(exc).__name__)
