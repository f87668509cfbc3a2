"""Canonical JSON, event hashes and timestamps (SPEC §1.3, Appendix B.2)."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any


def canonical_json(value: Any) -> str:
    """Return the canonical JSON text of a value: sorted keys, no whitespace, UTF-8 kept."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def sha256_hex(text: str) -> str:
    """Return the lower-case hex SHA-256 of a text's UTF-8 bytes."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def event_hash(
    *,
    prev_hash: str,
    stream_id: str,
    sequence: int,
    event_id: str,
    type_: str,
    timestamp: str,
    agent_id: str | None,
    payload: dict[str, Any],
) -> str:
    """Return the chain hash of one event as SPEC §1.3 defines it."""
    return sha256_hex(
        canonical_json(
            {
                "prev_hash": prev_hash,
                "stream_id": stream_id,
                "sequence": sequence,
                "event_id": event_id,
                "type": type_,
                "timestamp": timestamp,
                "agent_id": agent_id,
                "payload": payload,
            }
        )
    )


def format_ms(epoch_ms: int) -> str:
    """Render Unix epoch milliseconds as ISO-8601 UTC with milliseconds and `Z`."""
    moment = datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"


def parse_ms(text: str) -> int:
    """Parse a timestamp written by `format_ms` back into epoch milliseconds."""
    moment = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    return int(moment.timestamp()) * 1000 + moment.microsecond // 1000
