"""Bearer authentication and CORS, answered before routing (SPEC §2.1, Appendix C.5.6–C.5.7).

The order for every request (C.5.6): CORS preflight → public paths → 401 without a valid token →
403 for the read token on a method other than GET/HEAD → NUL check → routing.
"""

from __future__ import annotations

import hmac
import json
from typing import Any

from litestar.types import ASGIApp, Receive, Scope, Send

HEALTH_PATH = "/api/v1/health"
UNAUTHORIZED = "missing or invalid bearer token"
READ_ONLY = "this token may only read"
READ_METHODS = frozenset({"GET", "HEAD"})
# Paths answered without a token (C.5.6), for GET only: exact paths (a trailing slash ignored) and
# prefixes. `openapi.json` is not among them.
PUBLIC_PATHS = frozenset({HEALTH_PATH, "/api/v1/schema"})
PUBLIC_PREFIXES: tuple[str, ...] = ("/api/v1/schema/assets/",)
CORS_PREFLIGHT_HEADERS = (
    (b"access-control-allow-methods", b"GET, POST, OPTIONS"),
    (b"access-control-allow-headers", b"Authorization, Content-Type, Idempotency-Key, Last-Event-ID, X-Request-ID"),
    (b"access-control-max-age", b"600"),
)
CORS_EXPOSE = (b"access-control-expose-headers", b"Location, Idempotent-Replayed, X-Request-ID")
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


def is_public(method: str, path: str) -> bool:
    """True for the requests that need no token: health, the API reference page and its assets."""
    if method != "GET":
        return False
    return path.rstrip("/") in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


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


def _with_cors(send: Send, origin: bytes) -> Send:
    """`send`, adding the CORS response headers of C.5.7 to the response start."""

    async def sending(message: Any) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", ()), *_cors_headers(origin), CORS_EXPOSE]}
        await send(message)

    return sending


def _cors_headers(origin: bytes) -> tuple[tuple[bytes, bytes], ...]:
    return ((b"access-control-allow-origin", origin), (b"vary", b"Origin"))


async def _send_empty(send: Send, status: int, headers: tuple[tuple[bytes, bytes], ...]) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-length", b"0"), *headers]})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


class BearerGate:
    """Wraps the application's ASGI handler: no path, known or not, answers without the token."""

    def __init__(
        self,
        app: ASGIApp,
        token: str | None,
        *,
        console: bool = False,
        read_token: str | None = None,
        cors_origins: tuple[str, ...] = (),
    ) -> None:
        self.app = app
        self.token = token
        self.console = console
        self.read_token = read_token
        self.cors_origins = frozenset(origin.encode("ascii") for origin in cors_origins)

    def _access(self, scope: Scope) -> str | None:
        """What the request's bearer token grants: "full", "read", or None (no valid token)."""
        if self.token is None:
            return "full"
        authorization = _header(scope, b"authorization")
        if bearer_matches(authorization, self.token):
            return "full"
        if self.read_token is not None and bearer_matches(authorization, self.read_token):
            return "read"
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer CORS preflights, then 401/403 before routing when the token does not allow the request."""
        http: dict[str, Any] = scope  # type: ignore[assignment]
        if http["type"] == "http":
            method = str(http.get("method", ""))
            origin = _header(scope, b"origin")
            if origin is not None and origin in self.cors_origins:
                if method == "OPTIONS":
                    await _send_empty(send, 204, (*_cors_headers(origin), *CORS_PREFLIGHT_HEADERS))
                    return
                send = _with_cors(send, origin)
            exempt = is_public(method, str(http.get("path", ""))) or (self.console and _is_console(scope))
            if not exempt:
                access = self._access(scope)
                if access is None:
                    await _send_json(send, 401, {"error": UNAUTHORIZED}, ((b"www-authenticate", b"Bearer"),))
                    return
                if access == "read" and method not in READ_METHODS:
                    await _send_json(send, 403, {"error": READ_ONLY})
                    return
            if "\x00" in str(http.get("path", "")):
                # No route has a NUL in it, and no id containing one can be stored.
                await _send_json(send, 404, {"error": "Not Found"})
                return
            if method == "OPTIONS":
                http["method"] = UNROUTED_METHOD
        await self.app(scope, receive, send)
