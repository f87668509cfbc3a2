"""`mirror-neuron`: the server commands (serve, worker, migrate, rebuild, verify); the client commands are `app.cli`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import sys
import time
from typing import Any

from app import process
from app.cli import cli
from app.cli.common import EXIT_FAILED, EXIT_OK
from app.config import Settings

log = logging.getLogger("mirror_neuron")


def _settings(*, serving: bool = True) -> Settings:
    """The settings, or exit naming the bad variable. A command that neither listens nor runs jobs
    (`migrate`, `rebuild`, `verify`) is not held to the listener's rules: the image listens on
    0.0.0.0 by default, and its `migrate` needs no API token."""
    if serving:
        return process.settings_or_exit()
    return process.settings_or_exit(dict(os.environ, MIRROR_NEURON_API_ENABLED="0", MIRROR_NEURON_RUNTIME_ENABLED="1"))


# ------------------------------------------------------------------ server side


def _bind(host: str, port: int) -> socket.socket:
    from app.ops.listener import ListenError, bind

    try:
        sock = bind(host, port, backlog=2048)
    except ListenError as exc:
        print(f"mirror-neuron: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_FAILED) from None
    sock.set_inheritable(True)
    return sock


async def _migrate_if_asked(settings: Settings, db: Any) -> None:
    from app.store.migrate import upgrade_to_head

    if settings.auto_migrate:
        await upgrade_to_head(db.writer)


async def _start_node_when_ready(node: Any, stop: asyncio.Event, url: str) -> bool:
    """Register the node; without a migrated database keep trying (readiness says 503 meanwhile)."""
    from app.store.database_url import failure

    while not stop.is_set():
        try:
            await node.start()
            return True
        except Exception as exc:  # database down or not migrated yet
            log.warning("node start failed (%s); retrying in 2 s", failure(exc, url))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2):
                    await stop.wait()
    return False


async def _serve(settings: Settings, *, api: bool) -> int:
    from app.http import serving
    from app.ops import listener, memory, metrics, tracing
    from app.runtime.node import Node
    from app.service import Service
    from app.store.database import Database
    from app.store.database_url import failure, shown

    sock = _bind(settings.api_host, settings.api_port) if api else None
    try:
        ops_sock = None if settings.metrics_port is None else listener.bind(settings.metrics_host, settings.metrics_port)
    except listener.ListenError as exc:
        print(f"mirror-neuron: {exc} (the operations listener, MIRROR_NEURON_METRICS_PORT)", file=sys.stderr)
        return EXIT_FAILED
    shared_metrics = serving.shared_metrics_dir(settings) if ops_sock is not None and sock is not None else None
    if ops_sock is not None:
        metrics.enable(shared_metrics)  # before anything is counted
    tracing.configure_from_env(settings.node_name)
    db = Database(
        settings.database_url,
        pool_size=settings.db_pool_size,
        stalled_transaction_ms=int(settings.lease_ttl_seconds * 1000),
    )
    try:
        await _migrate_if_asked(settings, db)
    except Exception as exc:
        log.error("migration of %s failed: %s", shown(settings.database_url), failure(exc, settings.database_url))
        await db.dispose()
        return EXIT_FAILED
    service = Service(db)
    node = Node(settings, db, service)
    identity = listener.NodeIdentity(node.name, node.incarnation, node.ttl_ms, service.clock)
    ops = None if ops_sock is None else listener.serve(ops_sock, listener.OpsApp(db, identity))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    # SPEC §1.2: register and scan bundles before serving. If the database is not usable yet
    # (down, or not migrated with AUTO_MIGRATE=0) serve anyway — readiness answers 503 — and keep
    # trying in the background.
    try:
        await node.start()
        starter: asyncio.Task[bool] | None = None
        started = identity.registered = True
    except Exception as exc:
        log.warning("node start failed (%s); serving and retrying", failure(exc, settings.database_url))
        starter = asyncio.create_task(_start_node_when_ready(node, stop, settings.database_url))
        starter.add_done_callback(lambda task: setattr(identity, "registered", not task.cancelled() and task.result()))
        started = False
    upkeep = asyncio.create_task(_bundle_cache_upkeep(settings, db, stop), name="bundle-cache-upkeep")
    server_task = None
    server = None
    extra: list[Any] = []
    if sock is not None:
        from app.http.app import create_app

        app = create_app(settings, db, service, node_name=node.name)
        server = serving.HttpServer(settings.http_server, app, sock)
        server_task = asyncio.create_task(server.serve())
        extra = serving.start_extra(settings, sock, node.name, shared_metrics)  # MIRROR_NEURON_API_PROCESSES − 1
        log.info("listening on http://%s:%s/api/v1", settings.api_host, settings.api_port)
    memory.freeze_startup_objects()  # start-up is done: modules, app, statements, node
    fenced = asyncio.create_task(node.fenced_out.wait())
    waiters = [asyncio.create_task(stop.wait()), fenced]
    if server_task is not None:
        waiters.append(server_task)  # type: ignore[arg-type]
    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    stop.set()
    identity.shutting_down = True  # /readyz answers 503 from now on
    if server is not None and server_task is not None:
        server.stop()
        await asyncio.gather(server_task, serving.stop_extra(extra), return_exceptions=True)
    if starter is not None:
        started = await starter
    if started:
        await node.stop()
    for waiter in waiters:
        waiter.cancel()
    await upkeep
    if ops is not None:
        ops[0].should_exit = True
        await asyncio.gather(ops[1], return_exceptions=True)
    tracing.shutdown()
    await db.dispose()
    if shared_metrics is not None:
        shutil.rmtree(shared_metrics, ignore_errors=True)
    return EXIT_FAILED if node.fenced_out.is_set() else EXIT_OK


async def _bundle_cache_upkeep(settings: Settings, db: Any, stop: asyncio.Event) -> None:
    """Uploaded-bundle cache: leftovers swept and versions past the cap evicted, now and every minute."""
    from app.bundles.upkeep import CacheUpkeep

    await CacheUpkeep(db, settings.temp_dir, settings.bundle_cache_max_bytes).run(stop)


def cmd_serve() -> int:
    """API + runtime (as configured)."""
    settings = _settings()
    process.configure_logging(settings)
    return process.run(_serve(settings, api=settings.api_enabled))


def cmd_worker() -> int:
    """Runtime only, no HTTP."""
    settings = process.settings_or_exit(dict(os.environ, MIRROR_NEURON_API_ENABLED="0"))
    process.configure_logging(settings)
    return process.run(_serve(settings, api=False))


async def _with_db(work: Any, url: str | None = None) -> Any:
    from app.store.database import Database

    db = Database(url or _settings(serving=False).database_url)
    try:
        return await work(db)
    finally:
        await db.dispose()


def cmd_migrate() -> int:
    """Upgrade the database to the newest migration."""
    from app.store.database_url import failure, shown
    from app.store.migrate import head_revision, upgrade_to_head

    async def work(db: Any) -> None:
        await upgrade_to_head(db.writer)

    settings = _settings(serving=False)
    process.configure_logging(settings)
    try:
        asyncio.run(_with_db(work, settings.database_url))
    except Exception as exc:
        log.error("migration of %s failed: %s", shown(settings.database_url), failure(exc, settings.database_url))
        return EXIT_FAILED
    print(f"database at revision {head_revision()}")
    return EXIT_OK


def cmd_rebuild() -> int:
    """Drop and replay every projection."""
    from app.store.rebuild import rebuild

    started = time.monotonic()
    count = asyncio.run(_with_db(rebuild))
    elapsed = time.monotonic() - started
    print(f"rebuilt projections from {count} events in {elapsed:.2f} s")
    return EXIT_OK


def cmd_verify() -> int:
    """Fold the log into scratch rows and diff against the live projections."""
    from app.store.rebuild import verify

    differences = asyncio.run(_with_db(verify))
    for line in differences:
        print(line)
    if differences:
        print(f"verify: {len(differences)} difference(s)", file=sys.stderr)
        return EXIT_FAILED
    print("verify: projections match the event log")
    return EXIT_OK


# ------------------------------------------------------------------ the command line


@cli.command()
def serve() -> None:
    """Run the HTTP API and the runtime node (configured by the MIRROR_NEURON_* variables of README
    "Configuration"; migrations are applied first unless MIRROR_NEURON_AUTO_MIGRATE=0)."""
    raise SystemExit(cmd_serve())


@cli.command()
def worker() -> None:
    """Run a runtime node without the HTTP API (several may share one Postgres database)."""
    raise SystemExit(cmd_worker())


@cli.command()
def migrate() -> None:
    """Upgrade the database ($MIRROR_NEURON_DATABASE_URL) to the newest migration."""
    raise SystemExit(cmd_migrate())


@cli.command()
def rebuild() -> None:
    """Drop every projection row and replay all events into them ($MIRROR_NEURON_DATABASE_URL)."""
    raise SystemExit(cmd_rebuild())


@cli.command()
def verify() -> None:
    """Replay the events into scratch rows and diff them against the projections (exit 1 on a difference)."""
    raise SystemExit(cmd_verify())


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `mirror-neuron` console script."""
    try:
        cli.main(args=argv, prog_name="mirror-neuron")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (EXIT_OK if exc.code is None else EXIT_FAILED)
    except BrokenPipeError:
        # The reader went away (`mirror-neuron events <id> | head`): stop quietly, as Unix tools
        # do, and keep the interpreter's final flush of stdout from failing again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILED
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
