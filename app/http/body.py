"""Reading request bodies: byte limit, content type, UTF-8 and JSON rules (SPEC §2.1, Appendix B.3–B.4)."""

from __future__ import annotations

import asyncio
from typing import Any

from litestar import Request

from app.domain.json_limits import NUL_PROBLEM, parse_strict
from app.http.errors import ApiError

# Bodies above this size are parsed in a worker thread: a 10 MiB document takes seconds to parse
# and check, and the event loop also runs the node's heartbeats and job runners.
PARSE_IN_THREAD_BYTES = 64 * 1024
_JSON_WHITESPACE = b" \t\r\n"
NUL_MESSAGE = f"invalid JSON: {NUL_PROBLEM}"
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


def parse_json(body: bytes) -> Any:
    """The JSON value of a body, or 400 `invalid JSON: <detail>` (the limits of `json_limits`)."""
    if b"\x00" in body:
        raise ApiError(400, NUL_MESSAGE)
    try:
        return parse_strict(body)
    except ValueError as exc:
        raise ApiError(400, f"invalid JSON: {exc}") from None


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
