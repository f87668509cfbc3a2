"""The Appendix B.2 JSON text of a parsed request body (the §2.7 request digest, which SPEC C.1.1
keeps in that form), at msgspec's speed.

`app.domain.canonical.legacy_json` (the standard library's encoder) defines the text; the
domain may import nothing else. A submit's digest is the SHA-256 of its body's B.2 text
(SPEC §2.7): msgspec with sorted keys writes the same text about twice as fast on a manifest,
except for floats, which it formats differently in two cases — exponent forms (`1e16`, `1.5e-7`
where json writes `1e+16`, `1.5e-07`) and numbers below 1e-4 it writes in full (`0.00001` for
`1e-05`). Any text where such a number could be is encoded again by `legacy_json`; a false
alarm (the same characters inside a string) only costs that second encoding. Values msgspec
cannot encode (non-string keys, cycles, nesting past its depth) go to `legacy_json` too.

What is not caught: msgspec writes NaN and infinities as `null` and encodes sets, bytes,
dataclasses, datetimes and UUIDs, all of which json refuses. A body parsed from JSON holds none
of them (its parser refuses non-finite numbers), which is why this serves the request digest
only: every event payload goes through `canonical_json` (RFC 8785), which refuses what JSON
cannot carry.
"""

from __future__ import annotations

from typing import Any

import msgspec

from app.domain.canonical import legacy_json

_ENCODE = msgspec.json.Encoder(order="sorted").encode
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")


def _float_may_differ(data: bytes) -> bool:
    """Outside the strings: a digit followed by e/E (an exponent form), or `.0000` (a number below
    1e-4 in full, or a harmless false alarm such as 1.0001 once digits are zeroed).

    Without a backslash in the text every `"` delimits a string, so the even pieces of a split on
    it are the text outside strings (ids full of hex digits would otherwise always raise the
    alarm); with one, this says yes. A regular expression took 6 µs on a 400-byte manifest.
    """
    if b"\\" in data:
        return True
    outside = b"".join(data.split(b'"')[::2]).translate(_DIGITS_AS_ZERO)
    return b"0e" in outside or b"0E" in outside or b".0000" in outside


def canonical_text(value: Any) -> str:
    """`legacy_json(value)`, the same text, faster for values without unusual floats."""
    try:
        data = _ENCODE(value)
    except (TypeError, ValueError, OverflowError, RecursionError, msgspec.EncodeError):
        return legacy_json(value)
    if _float_may_differ(data):
        return legacy_json(value)
    return data.decode("utf-8")
