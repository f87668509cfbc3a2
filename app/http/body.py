"""Reading request bodies: byte limit, content type, UTF-8 and JSON rules (SPEC §2.1, Appendix B.3–B.4)."""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

from litestar import Request

from app.domain.canonical import int_hook
from app.http.errors import ApiError

MAX_JSON_DEPTH = 512
# Bodies above this size are parsed in a worker thread: a 10 MiB document takes seconds to parse
# and check, and the event loop also runs the node's heartbeats and job runners.
PARSE_IN_THREAD_BYTES = 64 * 1024
_JSON_WHITESPACE = b" \t\r\n"
NUL_MESSAGE = "invalid JSON: NUL characters (\\u0000) are not supported"
DEPTH_MESSAGE = f"invalid JSON: nesting deeper than {MAX_JSON_DEPTH} levels"
NOT_AN_OBJECT = "request body must be a JSON object"


def too_large(limit: int) -> ApiError:
    """413 for a body over the limit."""
    return ApiError(413, f"request body exceeds the limit of {limit} bytes")


async def read_body(request: Request[Any, Any, Any], limit: int) -> bytes:
    """The raw body; 413 for a declared Content-Length over `limit` (nothing read) or once `limit` is passed."""
    declared = request.headers.get("content-length", "").strip()
    if declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    chunks: list[bytes] = []
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def is_blank(body: bytes) -> bool:
    """True for no bytes or JSON whitespace only: such a body is never parsed."""
    return not body.strip(_JSON_WHITESPACE)


def check_content_type(request: Request[Any, Any, Any]) -> None:
    """415 unless the Content-Type is absent, application/json (with parameters) or application/<x>+json."""
    given = request.headers.get("content-type")
    if given is None:
        return
    media_type = given.split(";", 1)[0].strip().lower()
    if media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    ):
        return
    raise ApiError(415, f'unsupported content type "{given}"; expected application/json')


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number out of range: {text}")
    return value


def _constant(name: str) -> Any:
    raise ValueError(f"{name} is not a valid JSON value")


def _content_problem(value: Any) -> str | None:
    """The first unsupported content of a parsed document: a NUL, a lone surrogate, or depth > 512."""
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return NUL_MESSAGE
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return "invalid JSON: unpaired UTF-16 surrogates are not supported"
            continue
        if not isinstance(item, dict | list):
            continue
        if depth > MAX_JSON_DEPTH:
            return DEPTH_MESSAGE
        children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
        pending.extend((child, depth + 1) for child in children)
    return None


def parse_json(body: bytes) -> Any:
    """The JSON value of a body, or 400 `invalid JSON: <detail>`."""
    if b"\x00" in body:
        raise ApiError(400, NUL_MESSAGE)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, f"invalid JSON: {exc}") from None
    try:
        value = json.loads(
            text, parse_float=_finite, parse_constant=_constant, parse_int=int_hook(text, strict=True)
        )
    except RecursionError:
        # The parser recurses per level; a document this deep is far past the 512-level limit.
        raise ApiError(400, DEPTH_MESSAGE) from None
    except ValueError as exc:
        raise ApiError(400, f"invalid JSON: {exc}") from None
    if _may_hold_a_problem(body):
        problem = _content_problem(value)
        if problem is not None:
            raise ApiError(400, problem)
    return value


def _may_hold_a_problem(body: bytes) -> bool:
    """False when the raw text already rules out what `_content_problem` looks for.

    A NUL or a lone surrogate in a parsed string can only come from a `\\u` escape (the raw
    bytes are UTF-8 without NUL), and nesting deeper than the limit needs more opening brackets
    than the limit. Walking every value of a large manifest was 3 % of a submit's CPU.
    """
    return b"\\u" in body or body.count(b"[") + body.count(b"{") > MAX_JSON_DEPTH


async def json_object_body(request: Request[Any, Any, Any], limit: int) -> dict[str, Any] | None:
    """The body as a JSON object; None for an empty body. Errors follow SPEC §2.1 in its order."""
    body = await read_body(request, limit)
    if is_blank(body):
        return None
    check_content_type(request)
    value = (
        await asyncio.to_thread(parse_json, body) if len(body) > PARSE_IN_THREAD_BYTES else parse_json(body)
    )
    if not isinstance(value, dict):
        raise ApiError(400, NOT_AN_OBJECT)
    return value
