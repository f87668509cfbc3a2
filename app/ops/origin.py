"""Who asked for a command: its request id and trace context, carried into the group commit.

The write path commits commands of many callers in one task of its own; what it logs and traces
about a command must name that command's request, not the request whose command happened to
start the batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from app.ops import tracing
from app.ops.logs import REQUEST_ID


@dataclass(frozen=True, slots=True)
class Origin:
    """The request id and trace context current when a command was handed to the write path."""

    request_id: str | None
    trace: Any


NOBODY = Origin(None, None)


def capture() -> Origin:
    """The origin of work handed over now."""
    request_id, trace = REQUEST_ID.get(), tracing.current()
    return NOBODY if request_id is None and trace is None else Origin(request_id, trace)


@contextmanager
def acting_for(origin: Origin) -> Iterator[None]:
    """Log lines of the block carry `origin`'s request id (or none)."""
    token = REQUEST_ID.set(origin.request_id)
    try:
        yield
    finally:
        REQUEST_ID.reset(token)
