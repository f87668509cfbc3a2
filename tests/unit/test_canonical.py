"""SPEC §1.3, C.1: timestamps (`format_ms`, `parse_ms`, per-second caches), RFC 8785 canonical JSON (proven
against the `rfc8785` package) and the event hash of both algorithms, which must not change a byte."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from app.domain.canonical import (
    JCS,
    MAX_SAFE_INTEGER,
    PYJSON,
    canonical_json,
    event_hash,
    format_ms,
    legacy_json,
    may_hold_long_integer,
    parse_json,
    parse_ms,
    require_string_keys,
    seal_payload,
    sha256_hex,
)

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


# ------------------------------------------------------------------------------------ canonical JSON

# Characters where JCS and Python's json could part: escapes, U+2028, keys that sort differently
# by UTF-16 units than by code points (astral vs U+E000..U+FFFF), and anything UTF-8 can carry.
TRAPS = st.sampled_from(["\U0001f600", "\U00010000", "\U0010ffff", "\ufb33", "\uffff", "\ue000", "\u2028",
                         "\x00", "\x08", "\t", "\n", "\x0c", "\r", "\x1f", "\x7f", '"', "\\", "/", "é", "a", "A"])
TEXT = st.text(TRAPS | st.characters(codec="utf-8"), max_size=8)
SAFE_INTEGERS = st.integers(min_value=-MAX_SAFE_INTEGER, max_value=MAX_SAFE_INTEGER)
# Doubles of every magnitude (subnormals to 1.8e308), and the decimal-looking ones around the
# thresholds where ECMAScript and repr switch to exponent form.
FLOATS = (
    st.floats(allow_nan=False, allow_infinity=False)
    | st.builds(lambda m, e: m * 10.0**e, st.integers(-999, 999), st.integers(-10, 25))
    | st.sampled_from([1.0, 1e16, 1e21, 1e-6, 1e-7, 1e-5, 9.999999999999999e20, 123456789012345680000.0, 5e-324])
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | SAFE_INTEGERS | FLOATS | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=5),
    max_leaves=25,
)


@settings(max_examples=600)
@given(value=JSON_VALUES)
def test_canonical_json_is_the_rfc8785_packages_text(value: object) -> None:
    assert canonical_json(value) == rfc8785.dumps(value).decode("utf-8")


@settings(max_examples=300)
@given(value=JSON_VALUES)
def test_sealing_normalises_a_payload_to_what_its_text_reads_back_as(value: object) -> None:
    text, sealed = seal_payload({"v": value})
    assert sealed == parse_json(text)
    assert canonical_json(sealed) == text  # idempotent: a replayed value writes the same text


@given(number=st.integers(min_value=MAX_SAFE_INTEGER + 1, max_value=2**1100))
def test_a_large_integer_is_written_as_its_double_or_refused(number: int) -> None:
    try:
        double = float(number)
    except OverflowError:
        double = None
    if double is not None and int(double) == number:
        assert canonical_json([number, -number]) == rfc8785.dumps([double, -double]).decode()
    else:
        with pytest.raises(ValueError, match=f"^integer out of range: {number}$"):
            canonical_json({"a": [number]})


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ({"a": 1.0, "b": 1e16, "c": 1e-7}, '{"a":1,"b":10000000000000000,"c":1e-7}'),  # SPEC C.1.1's examples
        ({"\U0001f600": 1, "\ufb33": 2}, '{"\U0001f600":1,"\ufb33":2}'),  # UTF-16 order, not code points
        (2**60, "1152921504606847000"),
        ([1e21, 1e-6, -0.0], "[1e+21,0.000001,0]"),
    ],
)
def test_canonical_json_examples(value: object, text: str) -> None:
    assert canonical_json(value) == text


@pytest.mark.parametrize("value", [float("nan"), float("inf"), {"a": [float("-inf")]}, "\ud800", {"k\udfff": 1},
                                   {"a": 2**53 + 1}, {"\U0001f600": {1: 2}}, object()])
def test_canonical_json_refuses_what_json_cannot_carry(value: object) -> None:
    with pytest.raises((ValueError, TypeError)):
        canonical_json(value)


def test_non_string_keys_are_found_anywhere() -> None:
    require_string_keys({"a": [{"b": ({"c": 1},)}]})
    with pytest.raises(TypeError, match="keys must be str, not int"):
        require_string_keys({"a": [{"b": ({10: 1, 9: 2},)}]})


def test_stored_text_reads_large_integers_as_doubles() -> None:
    assert parse_json('{"a":10000000000000000,"b":9007199254740993,"c":[7]}') == {"a": 1e16, "b": 9007199254740992.0, "c": [7]}
    assert type(parse_json("[9007199254740991]")[0]) is int


@given(st.recursive(
    st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(st.sampled_from('0123456789"\\\u00e9\u0660\ud800a')),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(st.sampled_from("0123456789a"), max_size=20), inner, max_size=4),
    max_leaves=12,
))
def test_the_long_integer_scan_finds_every_long_integer_literal(value: object) -> None:
    text = legacy_json(value)
    outside = re.sub(r'"(?:[^"\\]|\\.)*"', "", text)
    expected = re.search(r"[0-9]{16}", outside) is not None
    for data in (text, text.encode("utf-8", "surrogatepass")):
        found = may_hold_long_integer(data)
        assert found or not expected  # never a miss
        if "\\" not in text:  # and without a backslash, no false alarm from a string's digits
            assert found is expected


# ------------------------------------------------------------------------------------ event hash

HASH_FIELDS = dict(
    prev_hash=st.text(), stream_id=st.text(), sequence=st.integers(min_value=1, max_value=2**31),
    event_id=st.text(), type_=st.text(), timestamp=st.text(), agent_id=st.none() | st.text(),
    payload=st.dictionaries(TEXT, JSON_VALUES, max_size=6),
)


def _envelope(fields: dict) -> dict:
    return {"prev_hash": fields["prev_hash"], "stream_id": fields["stream_id"], "sequence": fields["sequence"],
            "event_id": fields["event_id"], "type": fields["type_"], "timestamp": fields["timestamp"],
            "agent_id": fields["agent_id"], "payload": fields["payload"]}


@given(st.fixed_dictionaries(HASH_FIELDS))
def test_the_event_hash_is_the_sha256_of_the_rfc8785_text_of_its_eight_fields(fields: dict) -> None:
    # SPEC C.1.1 by its definition, with the published implementation: assembled around the
    # payload's text, the hash must not change a byte.
    definition = hashlib.sha256(rfc8785.dumps(_envelope(fields))).hexdigest()
    assert event_hash(**fields) == definition
    assert event_hash(**fields, payload_json=canonical_json(fields["payload"]), hash_alg=JCS) == definition


@given(st.fixed_dictionaries(HASH_FIELDS))
def test_a_legacy_event_hash_is_the_sha256_of_json_dumps(fields: dict) -> None:
    # Appendix B.2, for pyjson-sha256 events written before v1.1.
    text = json.dumps(_envelope(fields), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    assert event_hash(**fields, hash_alg=PYJSON) == sha256_hex(text)
    assert legacy_json(fields["payload"]) in text
