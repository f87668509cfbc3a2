"""`json_columns.parse_stored` (msgspec's decoder) reads stored JSON text exactly as `canonical.parse_json`
does (SPEC C.1.2): the same values of the same types, in the same key order."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from app.domain.canonical import canonical_json, legacy_json, parse_json
from app.store.json_columns import parse_stored
from tests.unit.test_canonical import FLOATS, TEXT

# Integers past MAX_SAFE_INTEGER too (read as doubles), as the legacy text writes them in full.
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | FLOATS | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=5),
    max_leaves=25,
)


def typed(value: Any) -> Any:
    """The value with every scalar's type and every object's key order made visible to ==."""
    if isinstance(value, dict):
        return ("dict", [(k, typed(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("list", [typed(v) for v in value])
    return (type(value).__name__, repr(value))


@given(VALUES)
def test_stored_text_reads_back_as_parse_json_reads_it(value: Any) -> None:
    texts = [legacy_json(value)]
    try:
        texts.append(canonical_json(value))
    except ValueError:  # an integer no double equals: only the legacy text holds it
        pass
    for text in texts:
        assert typed(parse_stored(text)) == typed(parse_json(text))


def test_text_msgspec_refuses_is_read_by_json_loads() -> None:
    for text in ('"\\udc00\\ud800"', "[1e400]", "NaN", '{"a":1,"b":2,"a":3}', "[10000000000000000]"):
        assert typed(parse_stored(text)) == typed(parse_json(text))
