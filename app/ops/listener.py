"""The operations listener (SPEC C.3.1, C.5.10): `GET /metrics`, `/livez`, `/readyz` on its own port.

No token and no loopback check: operators bind it to a private address. The socket is bound
when the process starts, so a port in use refuses the start instead of failing later.
`/metrics` reads the job counts from the projection first (one indexed query, at most once a
second however often it is scraped), then renders the metrics with prometheus-client: this
process's, or those of every API process of the node (app/ops/metrics.py `exposition`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST

from app.ops import metrics
from app.store import read_model
from app.store.database import Database
from app.store.health import node_alive, readiness

log = logging.getLogger(__name__)

COUNTS_MAX_AGE_SECONDS = 1.0


class ListenError(Exception):
    """The operations listener cannot bind its address."""


def bind(host: str, port: int, *, backlog: int = 128) -> socket.socket:
    """A listening TCP socket on `host:port` (the API's and this listener's); raises ListenError naming it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets whose proto says TCP. Without it
    # Nagle holds the body of a keep-alive response until the client's delayed ACK (~40 ms).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ListenError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(backlog)
    return sock


class NodeIdentity:
    """What `/readyz` checks about this process's node; `registered` until the node has started."""

    def __init__(self, name: str, incarnation: str, ttl_ms: int, clock: Callable[[], int]) -> None:
        self.name = name
        self.incarnation = incarnation
        self.ttl_ms = ttl_ms
        self.clock = clock
        self.registered = False
        self.shutting_down = False


class OpsApp:
    """The three endpoints as one ASGI application."""

    def __init__(self, db: Database, node: NodeIdentity) -> None:
        self.db = db
        self.node = node
        self._counted_at = float("-inf")
        self._routes: dict[str, Callable[[], Awaitable[tuple[int, bytes, bytes]]]] = {
            "/metrics": self._metrics,
            "/livez": self._livez,
            "/readyz": self._readyz,
        }

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Answer GET (and HEAD) of the three paths; 404 or 405 otherwise."""
        if scope["type"] != "http":
            return
        route = self._routes.get(scope["path"].rstrip("/") or "/")
        if route is None:
            status, media, body = 404, b"application/json", b'{"error":"Not Found"}'
        elif scope["method"] not in ("GET", "HEAD"):
            status, media, body = 405, b"application/json", b'{"error":"Method Not Allowed"}'
        else:
            status, media, body = await route()
        headers = [(b"content-type", media), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})

    async def _livez(self) -> tuple[int, bytes, bytes]:
        return 200, b"application/json", b'{"status":"ok"}'

    async def _readyz(self) -> tuple[int, bytes, bytes]:
        status, body = await self._readiness()
        return status, b"application/json", json.dumps(body).encode()

    async def _readiness(self) -> tuple[int, dict[str, str]]:
        node = self.node
        if node.shutting_down:
            return 503, {"status": "unavailable", "error": "graceful shutdown in progress"}
        status, body = await readiness(self.db)
        if status != 200:
            return status, body
        if not node.registered or not await node_alive(
            self.db, node.name, node.incarnation, now_ms=node.clock(), ttl_ms=node.ttl_ms
        ):
            return 503, {"status": "unavailable", "error": f"node {node.name} is not registered and alive"}
        return 200, {"status": "ready"}

    async def _metrics(self) -> tuple[int, bytes, bytes]:
        await self._refresh_job_counts()
        return 200, CONTENT_TYPE_LATEST.encode(), await asyncio.to_thread(metrics.exposition)

    async def _refresh_job_counts(self) -> None:
        """Read jobs by status at most once a second; keep the last values while the database is away."""
        if time.monotonic() - self._counted_at < COUNTS_MAX_AGE_SECONDS:
            return
        self._counted_at = time.monotonic()
        try:
            async with self.db.read() as conn:
                metrics.set_job_counts(await read_model.job_counts(conn))
        except Exception as exc:
            log.debug("jobs by status not refreshed: %s", type(exc).__name__)


def serve(sock: socket.socket, app: OpsApp) -> tuple[Any, asyncio.Task[None]]:
    """Serve `app` on `sock` with uvicorn in this loop; returns the server (set `should_exit`) and its task."""
    import uvicorn

    config = uvicorn.Config(app, log_level="warning", log_config=None, lifespan="off", access_log=False)
    server = uvicorn.Server(config)
    # The process's own handlers own SIGTERM and SIGINT (graceful shutdown of the node).
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    return server, asyncio.create_task(server.serve(sockets=[sock]), name="operations-listener")
