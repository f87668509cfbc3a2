"""SPEC §1.3: timestamps (`format_ms`, `parse_ms`, per-second caches) and the event hash, which must not change a byte."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.domain.canonical import canonical_json, event_hash, format_ms, parse_ms, sha256_hex

# From 1970 to the year 2200, in milliseconds.
EPOCH_MS = st.integers(min_value=0, max_value=7_258_118_400_000)


def reference_format(epoch_ms: int) -> str:
    """The definition: ISO-8601 UTC, milliseconds, `Z`."""
    moment = datetime.fromtimestamp(epoch_ms // 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"


@given(EPOCH_MS)
def test_format_matches_the_definition_and_parses_back(epoch_ms: int) -> None:
    text = format_ms(epoch_ms)
    assert text == reference_format(epoch_ms)
    assert parse_ms(text) == epoch_ms


@given(st.lists(st.integers(min_value=1_764_000_000_000, max_value=1_764_000_010_000), min_size=2, max_size=50))
def test_stamps_of_one_second_do_not_leak_into_each_other(stamps: list[int]) -> None:
    # Many stamps share a cached second: each must still carry its own milliseconds.
    assert [parse_ms(format_ms(ms)) for ms in stamps] == stamps


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-30T08:00:00.000Z", 1_796_025_600_000),
        ("2026-11-30T08:00:00.5Z", 1_796_025_600_500),  # not written by format_ms, still read
        ("2026-11-30T08:00:00.123456Z", 1_796_025_600_123),
    ],
)
def test_parse_reads_other_fraction_lengths(text: str, expected: int) -> None:
    assert parse_ms(text) == expected


def test_parse_rejects_a_malformed_stamp() -> None:
    with pytest.raises(ValueError):
        parse_ms("2026-11-30 08:00:00.000Z")


# ------------------------------------------------------------------------------------ event hash

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(value=JSON_VALUES)
def test_canonical_json_is_json_dumps_with_sorted_keys_no_whitespace_and_utf8_kept(value: object) -> None:
    # SPEC §1.3's canonical JSON as auditors write it; the encoder is built once, the text must not differ.
    expected = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    assert canonical_json(value) == expected


@pytest.mark.parametrize("value", [float("nan"), float("inf"), {"a": [float("-inf")]}])
def test_canonical_json_refuses_what_json_cannot_carry(value: object) -> None:
    with pytest.raises(ValueError):
        canonical_json(value)


@given(
    prev_hash=st.text(), stream_id=st.text(), sequence=st.integers(min_value=1), event_id=st.text(),
    type_=st.text(), timestamp=st.text(), agent_id=st.none() | st.text(),
    payload=st.dictionaries(st.text(), JSON_VALUES, max_size=6),
)
def test_the_event_hash_is_the_sha256_of_the_canonical_json_of_its_eight_fields(
    prev_hash: str, stream_id: str, sequence: int, event_id: str, type_: str, timestamp: str,
    agent_id: str | None, payload: dict,
) -> None:
    # SPEC §1.3 by its definition: the hash assembled around the payload's text must not change a byte.
    definition = sha256_hex(canonical_json({
        "prev_hash": prev_hash, "stream_id": stream_id, "sequence": sequence, "event_id": event_id,
        "type": type_, "timestamp": timestamp, "agent_id": agent_id, "payload": payload,
    }))
    fields = dict(prev_hash=prev_hash, stream_id=stream_id, sequence=sequence, event_id=event_id,
                  type_=type_, timestamp=timestamp, agent_id=agent_id, payload=payload)
    assert event_hash(**fields) == definition
    assert event_hash(**fields, payload_json=canonical_json(payload)) == definition
