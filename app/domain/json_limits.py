"""The JSON the system accepts from outside (SPEC Appendix B.3–B.4, C.1.2): request bodies and
bundle manifests are read by one parser and held to one set of content limits, because both end
up in events, which must be canonical JSON (no NaN or infinity, no integer a double cannot hold,
no NUL, no lone surrogate, at most 512 levels deep).
"""

from __future__ import annotations

import json
import math
from typing import Any

from app.domain.canonical import int_hook

MAX_JSON_DEPTH = 512
NUL_PROBLEM = "NUL characters (\\u0000) are not supported"
SURROGATE_PROBLEM = "unpaired UTF-16 surrogates are not supported"
DEPTH_PROBLEM = f"nesting deeper than {MAX_JSON_DEPTH} levels"


def parse_strict(data: bytes) -> Any:
    """The JSON value of UTF-8 bytes within the limits; ValueError whose text is the detail otherwise.

    The detail completes "invalid JSON: …" (request bodies) and "manifest.json is not valid JSON: …".
    """
    try:
        text = data.decode("utf-8")
        value = json.loads(
            text, parse_float=_finite, parse_constant=_constant, parse_int=int_hook(text, strict=True)
        )
    except RecursionError:
        # The parser recurses per level; a document this deep is far past the limit.
        raise ValueError(DEPTH_PROBLEM) from None
    if _may_hold_a_problem(data):
        problem = content_problem(value)
        if problem is not None:
            raise ValueError(problem)
    return value


def content_problem(value: Any) -> str | None:
    """The first unsupported content of a parsed document: a NUL, a lone surrogate, or depth > 512."""
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return NUL_PROBLEM
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return SURROGATE_PROBLEM
            continue
        if not isinstance(item, dict | list):
            continue
        if depth > MAX_JSON_DEPTH:
            return DEPTH_PROBLEM
        children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
        pending.extend((child, depth + 1) for child in children)
    return None


def _may_hold_a_problem(data: bytes) -> bool:
    """False when the raw text already rules out what `content_problem` looks for.

    A NUL or a lone surrogate in a parsed string can only come from a `\\u` escape (the raw
    bytes are UTF-8 without NUL), and nesting deeper than the limit needs more opening brackets
    than the limit. Walking every value of a large manifest was 3 % of a submit's CPU.
    """
    return b"\\u" in data or data.count(b"[") + data.count(b"{") > MAX_JSON_DEPTH


def _finite(text: str) -> float:
    # 1e999 would parse as infinity, which no event can carry.
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number out of range: {text}")
    return value


def _constant(name: str) -> Any:
    raise ValueError(f"{name} is not a valid JSON value")
