"""An in-process API server for tests that need real HTTP: uvicorn in a thread with its own loop.

The application, its database engines and the server all live in that thread's event loop, so
asyncpg connections never cross loops; the test talks to it over a loopback socket.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from app.config import Settings
from app.http.app import create_app
from app.service import Service
from app.store.database import Database


def _listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


async def _serve(
    settings: Settings, sock: socket.socket, server_box: list[uvicorn.Server], ready: threading.Event
) -> None:
    db = Database(settings.database_url)
    app = create_app(settings, db, Service(db), node_name="fuzz-node")
    config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    server_box.append(server)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started and not task.done():
        await asyncio.sleep(0.01)
    ready.set()
    try:
        await task
    finally:
        await db.dispose()


@contextmanager
def served(settings: Settings) -> Iterator[str]:
    """Serve `create_app(settings)` on a loopback port for the block; yields the base URL."""
    sock = _listening_socket()
    port = sock.getsockname()[1]
    servers: list[uvicorn.Server] = []
    ready = threading.Event()
    thread = threading.Thread(
        target=lambda: asyncio.run(_serve(settings, sock, servers, ready)), name="api-server", daemon=True
    )
    thread.start()
    if not ready.wait(30):
        raise RuntimeError("the in-process API server did not start")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        servers[0].should_exit = True
        thread.join(30)
        sock.close()
