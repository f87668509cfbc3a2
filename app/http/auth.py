"""Bearer authentication, answered before routing (SPEC §2.1)."""

from __future__ import annotations

import hmac
import json
from typing import Any

from litestar.types import ASGIApp, Receive, Scope, Send

HEALTH_PATH = "/api/v1/health"
UNAUTHORIZED = "missing or invalid bearer token"
# OPTIONS is not an API method: the router's automatic OPTIONS handlers are bypassed by routing
# the request under a method no route declares, so that it answers 405 (known path) or 404.
UNROUTED_METHOD = "MN-UNROUTED"


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value)
    return None


def bearer_matches(authorization: bytes | None, token: str) -> bool:
    """True when an Authorization header carries exactly `Bearer <token>` (constant-time compare)."""
    if authorization is None:
        return False
    scheme, _, credentials = authorization.strip().partition(b" ")
    if scheme.lower() != b"bearer":
        return False
    return hmac.compare_digest(credentials.strip(), token.encode("utf-8"))


def _bearer_ok(scope: Scope, token: str) -> bool:
    return bearer_matches(_header(scope, b"authorization"), token)


def _is_health(scope: Scope) -> bool:
    return scope.get("method") == "GET" and str(scope.get("path", "")).rstrip("/") == HEALTH_PATH


def _is_console(scope: Scope) -> bool:
    """`GET /` and `GET /ui/…`: the console's static files need no token (SPEC C.5.6)."""
    path = str(scope.get("path", ""))
    return scope.get("method") == "GET" and (path in ("/", "/ui") or path.startswith("/ui/"))


async def _send_json(
    send: Send, status: int, content: dict[str, str], headers: tuple[tuple[bytes, bytes], ...] = ()
) -> None:
    body = json.dumps(content, separators=(",", ":")).encode("utf-8")
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode("ascii")),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


class BearerGate:
    """Wraps the application's ASGI handler: no path, known or not, answers without the token."""

    def __init__(self, app: ASGIApp, token: str | None, *, console: bool = False) -> None:
        self.app = app
        self.token = token
        self.console = console

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer 401 before routing when the token is required and missing or wrong."""
        http: dict[str, Any] = scope  # type: ignore[assignment]
        if http["type"] == "http":
            token = self.token
            exempt = _is_health(scope) or (self.console and _is_console(scope))
            if token is not None and not exempt and not _bearer_ok(scope, token):
                await _send_json(send, 401, {"error": UNAUTHORIZED}, ((b"www-authenticate", b"Bearer"),))
                return
            if "\x00" in str(http.get("path", "")):
                # No route has a NUL in it, and no id containing one can be stored.
                await _send_json(send, 404, {"error": "Not Found"})
                return
            if http.get("method") == "OPTIONS":
                http["method"] = UNROUTED_METHOD
        await self.app(scope, receive, send)
