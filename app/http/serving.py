"""Serving the API: the ASGI server on the listening socket, and the extra API-only processes.

* `HttpServer` runs the Litestar app on an already bound socket, inside the running event loop (the
  node's loop): uvicorn (with uvloop and httptools) or Granian embedded (`granian.server.embed`, a Rust
  HTTP server that hands each request to this loop), as `MIRROR_NEURON_HTTP_SERVER` says. The socket
  is bound by the caller, so a port in use refuses to start before anything else happens.
* `MIRROR_NEURON_API_PROCESSES=N` (SPEC C.5.13): the first process (`mirror-neuron serve`) binds the
  port, runs the node and starts N−1 processes of `python -m app.http.serving` that inherit the
  listening socket and serve the same API under the same node name; they register no node, run no
  runtime and no heartbeat. The kernel hands each new connection to whichever process accepts it
  first. Each process has its own database pool (`MIRROR_NEURON_DB_POOL_SIZE` connections each).
  With the operations listener on, only the first process serves it, so all of them keep their
  metrics in files of one directory made for this run (`shared_metrics_dir`), which the first
  process's `/metrics` adds up (app/ops/metrics.py); the directory goes when the first process ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from app.config import Settings
from app.ops import metrics

log = logging.getLogger("mirror_neuron")

_FD_VARIABLE = "MIRROR_NEURON_INTERNAL_API_FD"  # set by the first process for the extra ones only
_METRICS_VARIABLE = "MIRROR_NEURON_INTERNAL_METRICS_DIR"  # likewise, when the listener is on
_METRICS_PREFIX = "metrics-"


class HttpServer:
    """One ASGI server on `sock` in the running loop; `serve()` returns once `stop()` has drained it."""

    def __init__(self, kind: str, app: Any, sock: socket.socket) -> None:
        self.kind = kind
        if kind == "granian":
            self._server: Any = _granian(app, sock)
        else:
            import uvicorn

            config = uvicorn.Config(
                app, log_level="warning", log_config=None, lifespan="off", timeout_graceful_shutdown=10, access_log=False
            )
            self._server = uvicorn.Server(config)
        self._sock = sock

    async def serve(self) -> None:
        if self.kind == "granian":
            await self._server.serve()
        else:
            await self._server.serve(sockets=[self._sock])

    def stop(self) -> None:
        if self.kind == "granian":
            self._server.stop()
        else:
            self._server.should_exit = True


def _granian(app: Any, sock: socket.socket) -> Any:
    """Granian embedded in this loop, serving from our socket instead of binding its own."""
    from granian._granian import SocketHolder
    from granian.constants import HTTPModes, Interfaces
    from granian.log import LogLevels
    from granian.server.embed import Server

    holder: Any = SocketHolder  # (fd, is_uds, backlog): a listener made from a socket we own

    class Embedded(Server):
        def _init_shared_socket(self) -> None:
            self._ssp = None
            self._shd = holder(sock.fileno(), False, 2048)

    server = Embedded(
        app, interface=Interfaces.ASGINL, http=HTTPModes.http1, websockets=False,
        log_level=LogLevels.error, backlog=2048,
    )
    server.workers_kill_timeout = 10  # like uvicorn's graceful shutdown: open streams get 10 s
    return server


# ------------------------------------------------------------------ extra API processes


def shared_metrics_dir(settings: Settings) -> Path | None:
    """With extra API processes, a new directory for the metrics of every API process; else None.

    Named after this process, under MIRROR_NEURON_TEMP_DIR; those of earlier runs whose first
    process is gone (killed before it could remove its own) are removed here.
    """
    if settings.api_processes < 2:
        return None
    settings.temp_dir.mkdir(parents=True, exist_ok=True)
    for old in settings.temp_dir.glob(f"{_METRICS_PREFIX}*-*"):
        pid = old.name.removeprefix(_METRICS_PREFIX).split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{_METRICS_PREFIX}{os.getpid()}-", dir=settings.temp_dir))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def start_extra(
    settings: Settings, sock: socket.socket, node_name: str, metrics_dir: Path | None = None
) -> list[subprocess.Popen[bytes]]:
    """Start the N−1 extra API-only processes of MIRROR_NEURON_API_PROCESSES on the inherited socket."""
    env = {**os.environ, "MIRROR_NEURON_NODE_NAME": node_name, _FD_VARIABLE: str(sock.fileno())}
    if metrics_dir is not None:
        env[_METRICS_VARIABLE] = str(metrics_dir)
    procs = []
    for _ in range(settings.api_processes - 1):
        proc = subprocess.Popen([sys.executable, "-m", "app.http.serving"], env=env, pass_fds=(sock.fileno(),))
        threading.Thread(target=_reap, args=(proc,), name=f"api-process-{proc.pid}", daemon=True).start()
        procs.append(proc)
    if procs:
        log.info("serving the API from %d processes: %s", len(procs) + 1, [p.pid for p in procs])
    return procs


def _reap(proc: subprocess.Popen[bytes]) -> None:
    """Wait for an extra process to exit, whenever it does: its live gauges stop counting then."""
    code = proc.wait()
    metrics.process_exited(proc.pid)
    if code != 0:
        log.warning("extra API process %d exited with status %d", proc.pid, code)


async def stop_extra(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM to every extra process; SIGKILL to any still running after 15 s."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)

    def wait(proc: subprocess.Popen[bytes]) -> None:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    await asyncio.gather(*(asyncio.to_thread(wait, p) for p in procs))


def die_with_parent() -> None:
    """Linux: be sent SIGTERM if the first process dies without stopping us."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


async def _serve_api_only(settings: Settings, fd: int, parent: int) -> int:
    from app.http.app import create_app
    from app.ops import memory
    from app.service import Service
    from app.store.database import Database

    sock = socket.socket(fileno=fd)
    shared = os.environ.pop(_METRICS_VARIABLE, None)
    if shared is not None:
        metrics.enable(Path(shared))
    db = Database(
        settings.database_url,
        pool_size=settings.db_pool_size,
        stalled_transaction_ms=int(settings.lease_ttl_seconds * 1000),
    )
    service = Service(db)
    app = create_app(settings, db, service, node_name=settings.node_name)
    server = HttpServer(settings.http_server, app, sock)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, server.stop)
    if os.getppid() != parent:  # the first process died before we could ask to follow it
        return 1
    memory.freeze_startup_objects()
    try:
        await server.serve()
    finally:
        await db.dispose()
    return 0


def main() -> int:
    """`python -m app.http.serving`: an extra API-only process, started by `mirror-neuron serve` only."""
    raw = os.environ.pop(_FD_VARIABLE, None)
    if raw is None:
        print("app.http.serving: started by `mirror-neuron serve` with MIRROR_NEURON_API_PROCESSES > 1 only",
              file=sys.stderr)
        return 2
    parent = os.getppid()
    die_with_parent()
    from app import process

    settings = process.settings_or_exit()
    process.configure_logging(settings)
    return process.run(_serve_api_only(settings, int(raw), parent))


if __name__ == "__main__":
    sys.exit(main())
