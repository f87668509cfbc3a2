"""Query parameter and header rules (SPEC §2.8, §2.14, §2.15, Appendix B.10)."""

from __future__ import annotations

from app.domain.events import ALL_STATUSES, TERMINAL_STATUSES
from app.http.errors import ApiError

LIMIT_MESSAGE = "limit must be an integer between 1 and 1000"
MAX_LIMIT = 1000


def _digits(value: str) -> int | None:
    """The value of a string of ASCII digits only (no sign, space or exponent); None otherwise."""
    return int(value) if value.isascii() and value.isdigit() else None


def non_negative(value: str | None, message: str) -> int | None:
    """An optional integer >= 0; 400 with `message` for anything else."""
    if value is None:
        return None
    number = _digits(value)
    if number is None:
        raise ApiError(400, message)
    return number


def optional_limit(value: str | None) -> int | None:
    """An optional integer 1–1000; 400 for anything else."""
    if value is None:
        return None
    number = _digits(value)
    if number is None or not 1 <= number <= MAX_LIMIT:
        raise ApiError(400, LIMIT_MESSAGE)
    return number


def limit(value: str | None, default: int) -> int:
    """An integer 1–1000, `default` when absent; 400 for anything else."""
    given = optional_limit(value)
    return default if given is None else given


def flag(value: str | None) -> bool:
    """Boolean query parameters: exactly `true` or `1` are true."""
    return value in ("true", "1")


def statuses(values: list[str] | None, include_terminal: str | None) -> frozenset[str] | None:
    """The statuses a job list matches (None: all); `include_terminal=false` keeps only live ones."""
    wanted: frozenset[str] | None = None
    if values:
        items = [item for value in values for item in value.split(",")]
        for item in items:
            if item not in ALL_STATUSES:
                raise ApiError(400, f'unknown status "{item}"')
        wanted = frozenset(items)
    if include_terminal == "false":
        live = frozenset(ALL_STATUSES) - TERMINAL_STATUSES
        wanted = live if wanted is None else wanted & live
    return wanted
