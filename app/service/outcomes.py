"""What the service answers: a command's Outcome, a submit's Submitted, a cleanup's Cleaned, and the ids and times it hands out."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

from app.domain.events import Event
from app.domain.projection import JobProjection


def now_ms() -> int:
    """Wall-clock time in Unix epoch milliseconds."""
    return time.time_ns() // 1_000_000


def new_job_id(graph_id: str, epoch_ms: int) -> str:
    """`<graph_id>-<unix_epoch_ms>-<12 lowercase hex>` (SPEC §1.4)."""
    return f"{graph_id}-{epoch_ms:013d}-{secrets.token_hex(6)}"


@dataclass(frozen=True)
class Outcome:
    """What a command appended (nothing for an idempotent no-op) and the job's projection after it.

    `replayed`: the command had committed before (a retry after an unknown outcome, or an HTTP
    control retried with its Idempotency-Key): `events` are the ones it appended then, and
    `projection` is None.
    """

    events: list[Event]
    projection: JobProjection | None
    replayed: bool = False


@dataclass(frozen=True)
class Submitted:
    """The answer to a submit: a new job, or the replay of an earlier one with the same key."""

    job_id: str
    status: str
    replayed: bool


class IdempotencyMismatch(Exception):
    """The Idempotency-Key was used before with a different request body."""


@dataclass(frozen=True)
class Cleaned:
    """The answer to a cleanup: the jobs it deleted, and whether its key had deleted some before."""

    deleted: list[str]
    replayed: bool = False
