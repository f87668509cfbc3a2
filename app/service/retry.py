"""The one retry rule of every write: run the whole transaction again while another writer wins the race."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from app.store.event_store import ConcurrencyConflict

MAX_ATTEMPTS = 20

T = TypeVar("T")


async def retried(attempt: Callable[[], Awaitable[T]], stream_id: str) -> T:
    """`attempt()`, run again while it raises ConcurrencyConflict, at most MAX_ATTEMPTS times.

    `attempt` must be one whole transaction (load, decide, write): a conflict means another
    writer committed first, so what was loaded is stale and everything is decided again.
    """
    for _ in range(MAX_ATTEMPTS):
        try:
            return await attempt()
        except ConcurrencyConflict:
            continue
    raise ConcurrencyConflict(stream_id)
