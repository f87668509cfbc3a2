"""The outermost layer of the API port: request id, access line, HTTP metrics and span (SPEC C.5.8).

It wraps everything else (authentication included), so every response — a 401, a 404, a stream —
carries `X-Request-ID` and is counted. The route label is the template Litestar matched
(`/api/v1/jobs/{job_id}`), `unmatched` when no route did: a label never holds a job id.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from app.ops import logs, metrics, tracing

log = logging.getLogger("mirror_neuron.access")

HEADER = b"x-request-id"
UNMATCHED = "unmatched"


def accepted_request_id(value: bytes | None) -> str | None:
    """The client's id when it is 1–128 characters of 0x21–0x7E, else None."""
    if value is None or not 1 <= len(value) <= 128:
        return None
    if any(byte < 0x21 or byte > 0x7E for byte in value):
        return None
    return value.decode("ascii")


def _client_id(headers: Any) -> bytes | None:
    for key, value in headers:
        if key.lower() == HEADER:
            return bytes(value)
    return None


class RequestObserver:
    """ASGI middleware: gives each HTTP request an id, echoes it, logs and measures the request."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Run the request with its id in the logging context and `X-Request-ID` on the response."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = accepted_request_id(_client_id(scope.get("headers", ()))) or str(uuid.uuid4())
        echoed = request_id.encode("ascii")
        token = logs.REQUEST_ID.set(request_id)
        started = time.perf_counter()
        status = 500
        method = scope.get("method", "")
        path = scope.get("path", "")  # routing rewrites it for mounted apps
        route = UNMATCHED

        async def send_with_id(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != HEADER]
                message = {**message, "headers": [*headers, (HEADER, echoed)]}
            await send(message)

        try:
            with tracing.http_request(method, path, scope.get("headers", ())) as span:
                try:
                    await self.app(scope, receive, send_with_id)
                finally:
                    route = scope.get("path_template") or UNMATCHED
                    tracing.http_answered(span, method, route, status)
        finally:
            seconds = time.perf_counter() - started
            metrics.http_answered(method, route, status, seconds)
            log.info("%s %s %d %.1f ms", method, path, status, seconds * 1000)
            logs.REQUEST_ID.reset(token)
