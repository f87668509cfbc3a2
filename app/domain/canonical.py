"""Canonical JSON (RFC 8785, and the Appendix B.2 form before it), event hashes and timestamps (SPEC §1.3, C.1)."""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

JCS = "jcs-sha256"
PYJSON = "pyjson-sha256"
HASH_ALGORITHMS = (PYJSON, JCS)  # the order they may appear in within a stream (SPEC C.1.3)
# JSON numbers are IEEE-754 doubles (SPEC C.1.2): integers beyond this are exact only sometimes.
MAX_SAFE_INTEGER = 2**53 - 1
OUT_OF_RANGE = "integer out of range: "  # the ValueError of an integer no double equals (C.1.2)

# One encoder for every call: json.dumps with these options builds a new JSONEncoder per call,
# which was most of the cost of encoding the short strings an event hash is made of (1.6 µs ->
# 0.2 µs each, eight per event). The text is the same: json.dumps is this encoder's encode.
_LEGACY = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
# The C string encoder: for well-formed strings it escapes exactly as RFC 8785 §3.2.2.2 says
# (\b \t \n \f \r \" \\ short, other controls as lower-case \u00xx, nothing else).
_STRING: Callable[[str], str] = json.encoder.encode_basestring
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"')
_DIGITS_AS_ZERO = str.maketrans("123456789", "000000000")
_NUMBERS = re.compile(r"-?[0-9][0-9.eE+-]*")
_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|(-?[0-9][0-9.eE+-]*)')
# Every stored payload read back is scanned for 16 digits in a row (int_hook): as bytes with the
# digits turned into zeros, a C table lookup and a substring search, 8x cheaper than the regular
# expression [0-9]{16} (3.2 -> 0.4 µs for a payload of 370 characters). UTF-8 writes no other
# character with a byte in 0x30-0x39, so the runs of digits are the text's.
_DIGITS_AS_ZERO_BYTES = bytes.maketrans(b"123456789", b"000000000")
_SIXTEEN_ZEROS = b"0" * 16


def legacy_json(value: Any) -> str:
    """The Appendix B.2 text (Python's json.dumps, sorted keys): `pyjson-sha256` hashes and the
    §2.7 request digest."""
    return _LEGACY.encode(value)


def canonical_json(value: Any) -> str:
    """Return the RFC 8785 (JCS) text of a JSON value (SPEC C.1.1).

    Raises ValueError for a non-finite float, an int outside ±MAX_SAFE_INTEGER that no double
    equals (`integer out of range: <n>`) or a lone surrogate; TypeError for a non-JSON value.
    """
    return _canonical(value)[0]


def seal_payload(value: Any) -> tuple[str, Any]:
    """The RFC 8785 text of a payload and the value that text parses back to (SPEC C.1.1), which
    is `value` itself when the two can only differ in container types (tuples, not lists)."""
    text, rewritten = _canonical(value)
    return text, parse_json(text) if rewritten else value


def _canonical(value: Any) -> tuple[str, bool]:
    # The legacy text (the C encoder's, several times faster than the walk below) differs from
    # the JCS text only in its numbers (floats as repr, integers past 2^53 in full) and, when an
    # astral character is present, possibly in key order (UTF-16 units, not code points). So:
    # astral characters -> the walk; else the number tokens outside strings that may differ are
    # rewritten in place. A false alarm (a safe integer of 16 digits, an astral character in a
    # value) costs only time. The bool is True when the text may not be the legacy text, so
    # the value must be read back from it to be what the text says.
    text = _LEGACY.encode(value)
    if not text.isascii():
        text.encode("utf-8")  # a lone surrogate: UnicodeEncodeError, a ValueError
        if max(text) > "\uffff":
            return _jcs(value), True
    if "\\" in text:
        outside = _STRINGS.sub("", text)
        if not _numbers_differ(outside):
            return text, False
        return _TOKENS.sub(_jcs_token, text), True
    # Without a backslash every `"` delimits a string: the even pieces are the text between them.
    pieces = text.split('"')
    between = pieces[::2]
    if not _numbers_differ("".join(between)):
        return text, False
    # One substitution over all the pieces at once (NUL never occurs outside strings in JSON text).
    pieces[::2] = _NUMBERS.sub(_jcs_number, "\x00".join(between)).split("\x00")
    return '"'.join(pieces), True


def _numbers_differ(outside: str) -> bool:
    """Whether JSON text with its strings cut out holds a float (repr always writes a digit
    then `.` or `e`) or an integer of 16 digits or more (the only ones past MAX_SAFE_INTEGER).
    str methods, not a regular expression: this runs for every payload (a regex was 3x slower)."""
    zeroed = outside.translate(_DIGITS_AS_ZERO)
    return "0." in zeroed or "0e" in zeroed or "0E" in zeroed or "0000000000000000" in zeroed


def _jcs_number(match: re.Match[str]) -> str:
    # The legacy text wrote a float as repr (which reads back as exactly that double) and an
    # int in full: rewrite each as RFC 8785 writes that number.
    token = match.group()
    if "." in token or "e" in token or "E" in token:
        return ecma_number(float(token))
    return json_integer(int(token))


def _jcs_token(match: re.Match[str]) -> str:
    return match.group() if match.group(1) is None else _jcs_number(match)


def _jcs(value: Any) -> str:
    parts: list[str] = []
    _write(value, parts)
    return "".join(parts)


def _utf16(key: str) -> bytes:
    return key.encode("utf-16-be")


def require_string_keys(value: Any) -> None:
    """TypeError for an object key that is not a string anywhere in `value`.

    json.dumps turns int keys into strings after sorting them as ints ({10: .., 9: ..} is
    written "9" first), which no canonical reader reproduces; the fast path above cannot see
    that, so values from code we do not own (module agents) are checked with this first.
    """
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            for key, child in item.items():
                if type(key) is not str:
                    raise TypeError(f"keys must be str, not {type(key).__name__}")
                pending.append(child)
        elif isinstance(item, list | tuple):
            pending.extend(item)


def _write(value: Any, parts: list[str]) -> None:
    if isinstance(value, str):
        value.encode("utf-8")  # lone surrogates are not JSON text (UnicodeEncodeError)
        parts.append(_STRING(value))
    elif value is None or value is True or value is False:
        parts.append("null" if value is None else "true" if value else "false")
    elif isinstance(value, int):
        parts.append(json_integer(value))
    elif isinstance(value, float):
        parts.append(ecma_number(value))
    elif isinstance(value, dict):
        if not all(type(key) is str for key in value):
            raise TypeError("keys must be str")
        items = value
        parts.append("{")
        for i, key in enumerate(sorted(items, key=_utf16)):
            if i:
                parts.append(",")
            _write(key, parts)
            parts.append(":")
            _write(items[key], parts)
        parts.append("}")
    elif isinstance(value, list | tuple):
        parts.append("[")
        for i, item in enumerate(value):
            if i:
                parts.append(",")
            _write(item, parts)
        parts.append("]")
    else:
        raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def json_integer(number: int) -> str:
    """An int as a JSON number: its digits within ±MAX_SAFE_INTEGER, else the double equal to it."""
    number = int(number)
    if -MAX_SAFE_INTEGER <= number <= MAX_SAFE_INTEGER:
        return str(number)
    return ecma_number(exact_double(number))


def exact_double(number: int) -> float:
    """The double equal to an int; ValueError `integer out of range: <n>` when there is none."""
    try:
        double = float(number)
    except OverflowError:
        raise ValueError(f"{OUT_OF_RANGE}{number}") from None
    if int(double) != number:
        raise ValueError(f"{OUT_OF_RANGE}{number}")
    return double


def is_out_of_range(exc: BaseException) -> bool:
    """Whether an exception is the C.1.2 refusal of an integer no double equals."""
    return type(exc) is ValueError and str(exc).startswith(OUT_OF_RANGE)


def ecma_number(number: float) -> str:
    """A double as ECMAScript's Number.prototype.toString writes it (RFC 8785 §3.2.2.3)."""
    if not math.isfinite(number):
        raise ValueError(f"Out of range float values are not JSON compliant: {number!r}")
    if number == 0:
        return "0"
    # repr gives the shortest digits that read back as the same double (the digits ECMAScript
    # asks for); only where the decimal point goes and the exponent's form differ.
    text = repr(number)
    if "e" not in text:
        # repr writes fixed notation only from 1e-4 up to 1e16, where ECMAScript does too, with
        # the same digits; it adds ".0" to an integral value, which ECMAScript does not.
        return text[:-2] if text.endswith(".0") else text
    sign = "-" if text[0] == "-" else ""
    mantissa, _, exponent = text.lstrip("-").partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = (whole + fraction).lstrip("0")
    point = len(whole) + int(exponent or 0) - (len(whole + fraction) - len(digits))
    digits = digits.rstrip("0")
    count = len(digits)
    if count <= point <= 21:
        return sign + digits + "0" * (point - count)
    if 0 < point <= 21:
        return f"{sign}{digits[:point]}.{digits[point:]}"
    if -6 < point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    power = point - 1
    head = digits[0] + ("." + digits[1:] if count > 1 else "")
    return f"{sign}{head}e{'+' if power > 0 else '-'}{abs(power)}"


def _checked_int(literal: str) -> int:
    # Kept as the int (equal to its double), so that a request digest stays the B.2 text of what
    # was sent; sealing writes it as the double and reads it back as one.
    number = int(literal)
    if not -MAX_SAFE_INTEGER <= number <= MAX_SAFE_INTEGER:
        exact_double(number)
    return number


def _read_int(literal: str) -> int | float:
    number = int(literal)
    return number if -MAX_SAFE_INTEGER <= number <= MAX_SAFE_INTEGER else float(number)


def int_hook(data: str | bytes, *, strict: bool) -> Callable[[str], int | float] | None:
    """The `parse_int` for `json.loads` of `data` under SPEC C.1.2, or None when no integer in it
    can pass MAX_SAFE_INTEGER (fewer than 16 digits in a row: the default parser is faster).

    Without `strict` (stored text) an integer literal beyond ±MAX_SAFE_INTEGER is read as the
    double nearest to it; with `strict` (requests, manifests, executor stdout) one that double
    does not equal raises ValueError `integer out of range: <n>`, and one it equals stays an int.
    """
    if not may_hold_long_integer(data):
        return None
    return _checked_int if strict else _read_int


def may_hold_long_integer(data: str | bytes) -> bool:
    """Whether JSON text may hold an integer literal of 16 digits or more (the shortest an integer
    beyond ±MAX_SAFE_INTEGER is written with): False only when it certainly does not."""
    raw = (data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data).translate(_DIGITS_AS_ZERO_BYTES)
    if _SIXTEEN_ZEROS not in raw:
        return False
    if b"\\" in raw:
        return True
    # Without a backslash every `"` delimits a string: the even pieces are the text outside them.
    # Hex digests in strings (a 64-digit SHA-256 holds 16 decimal digits in a row about once in
    # 40) no longer send their payloads to the slow parse.
    return _SIXTEEN_ZEROS in b"".join(raw.split(b'"')[::2])


def parse_json(text: str) -> Any:
    """Read JSON text as every verifier does (SPEC C.1.2): numbers are doubles, so an integer
    literal beyond ±MAX_SAFE_INTEGER becomes the double nearest to it."""
    return json.loads(text, parse_int=int_hook(text, strict=False))


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
    payload_json: str | None = None,
    hash_alg: str = JCS,
) -> str:
    """Return the chain hash of one event as SPEC §1.3 and C.1 define it for `hash_alg`.

    The hashed text is the canonical JSON (`hash_alg`'s form) of the eight fields; it is
    assembled around the payload's text (`payload_json` when the caller has it already) rather
    than by encoding the whole object, so that a payload is encoded once for its hash and its
    row. The eight keys are ASCII and the other seven values strings, an int and null, which
    both forms write alike.
    """
    if payload_json is None:
        payload_json = canonical_json(payload) if hash_alg == JCS else legacy_json(payload)
    # The keys in sorted order (code points and UTF-16 units agree on ASCII). Strings and the
    # sequence go straight to the C string encoder and int.__repr__, which is what the encoder
    # calls for them (its own dispatch was half the cost of a hash); anything else through it.
    text = (
        f'{{"agent_id":{_field(agent_id)},"event_id":{_field(event_id)},"payload":{payload_json},'
        f'"prev_hash":{_field(prev_hash)},"sequence":{_field(sequence)},'
        f'"stream_id":{_field(stream_id)},"timestamp":{_field(timestamp)},'
        f'"type":{_field(type_)}}}'
    )
    return sha256_hex(text)


def _field(value: Any) -> str:
    """`_LEGACY.encode(value)` (the text both forms write for a string, an int or null)."""
    kind = type(value)
    if kind is str:
        return _STRING(value)
    if kind is int:
        return int.__repr__(value)
    return _LEGACY.encode(value)


def format_ms(epoch_ms: int) -> str:
    """Render Unix epoch milliseconds as ISO-8601 UTC with milliseconds and `Z`."""
    seconds, millis = divmod(epoch_ms, 1000)
    return f"{_format_second(seconds)}.{millis:03d}Z"


def parse_ms(text: str) -> int:
    """Parse a timestamp written by `format_ms` back into epoch milliseconds."""
    if len(text) == 24 and text[19] == "." and text[23] == "Z" and text[20:23].isdigit():
        return _parse_second(text[:19]) * 1000 + int(text[20:23])
    moment = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    return int(moment.timestamp()) * 1000 + moment.microsecond // 1000


# Every event is stamped and every fold parses stamps; the events of one busy second share
# their date and time, so both directions are cached per second (strftime and strptime were
# 3.5 % of a busy node's CPU).
@lru_cache(maxsize=256)
def _format_second(epoch_s: int) -> str:
    return datetime.fromtimestamp(epoch_s, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")


@lru_cache(maxsize=256)
def _parse_second(text: str) -> int:
    return int(datetime.strptime(text, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC).timestamp())
