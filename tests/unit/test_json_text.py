"""`canonical_text` (a request body's digest) writes exactly `legacy_json`'s text (SPEC §2.7, Appendix B.2:
the digest keeps that form across v1.1, so an idempotency key retried across the upgrade still matches)."""

from __future__ import annotations

import math
import random
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.domain.canonical import canonical_json, legacy_json
from app.domain.events import NewEvent
from app.http.json_text import canonical_text
from app.store import event_store
from app.store.event_store import StreamHead

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=30,
)


@given(value=JSON_VALUES)
def test_any_json_value_gets_the_canonical_text(value: object) -> None:
    assert canonical_text(value) == legacy_json(value)


@pytest.mark.parametrize(
    "number",
    [1e16, 1.5e16, 1e22, 1e-5, 1.23e-5, 1e-7, 5e-324, 1.7976931348623157e308, 0.0001, 0.00011, -0.0, 2.0**53,
     9999999999999998.0, 123456789012345680.0, 10**30, -(2**63) - 1],
)
def test_the_floats_msgspec_writes_differently_still_get_the_canonical_text(number: float) -> None:
    value = {"n": number, "s": "0.00001 and 1e5 inside a string"}
    assert canonical_text(value) == legacy_json(value)


def test_random_doubles_of_every_magnitude_get_the_canonical_text() -> None:
    rng = random.Random(20261206)
    numbers = [struct.unpack("d", struct.pack("Q", rng.getrandbits(64)))[0] for _ in range(20_000)]
    numbers += [rng.uniform(1, 10) * 10.0**e for e in range(-30, 30) for _ in range(200)]
    finite = [n for n in numbers if math.isfinite(n)]
    assert [canonical_text(n) for n in finite] == [legacy_json(n) for n in finite]


def test_keys_sort_by_code_point_across_the_planes() -> None:
    value = {"\ue000": 1, "\U0001f600": 2, "z": 3, "Z": 4, "é": 5, "": 6}
    assert canonical_text(value) == legacy_json(value)


def test_what_json_refuses_is_still_refused() -> None:
    with pytest.raises(TypeError):
        canonical_text({"a": object()})
    with pytest.raises(ValueError):  # stdlib json's own message for a circular reference
        circular: list[object] = []
        circular.append(circular)
        canonical_text(circular)


def test_sealing_refuses_what_an_agent_produced_and_json_cannot_carry() -> None:
    # Event payloads go through canonical_json (RFC 8785), never the faster encoder: a module that emits a
    # set must still fail its step, as json refuses it.
    with pytest.raises(TypeError, match="set is not JSON serializable"):
        event_store.seal("s", None, StreamHead(), [NewEvent("agent_message_emitted", {"body": {1, 2}})], 1)
    sealed = event_store.seal("s", None, StreamHead(), [NewEvent("job_submitted", {"n": 1e-7, "m": "x"})], 1)
    assert sealed[0].payload_json == canonical_json({"n": 1e-7, "m": "x"})
