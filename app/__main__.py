"""`mirror-neuron` command line: serve, worker, migrate, rebuild, verify, submit, jobs, events."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from app.config import ConfigError, Settings

log = logging.getLogger("mirror_neuron")

EXIT_OK, EXIT_FAILED, EXIT_TIMEOUT, EXIT_USAGE = 0, 1, 2, 2


def _settings(*, serving: bool = True) -> Settings:
    """The settings, or exit naming the bad variable. A command that neither listens nor runs jobs
    (`migrate`, `rebuild`, `verify`) is not held to the listener's rules: the image listens on
    0.0.0.0 by default, and its `migrate` needs no API token."""
    env = os.environ if serving else dict(os.environ, MIRROR_NEURON_API_ENABLED="0", MIRROR_NEURON_RUNTIME_ENABLED="1")
    try:
        return Settings.from_env(env)
    except ConfigError as exc:
        print(f"mirror-neuron: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None


# Libraries whose chatter is not the service's: alembic's "setup plugin ..." lines at every
# migration, and aiosqlite's DEBUG line per statement (they bury ours at LOG_LEVEL=DEBUG).
QUIET_LOGGERS = ("alembic.runtime.plugins", "aiosqlite")


def _logging(settings: Settings) -> None:
    from app.ops import logs

    logs.configure(settings.log_format, settings.log_level, node=settings.node_name)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mirror-neuron")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


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
    from app.ops import listener, metrics, tracing
    from app.runtime import memory
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
    if ops_sock is not None:
        metrics.enable()
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
    server_task = None
    server = None
    extra: list[Any] = []
    if sock is not None:
        from app.http import serving
        from app.http.app import create_app

        app = create_app(settings, db, service, node_name=node.name)
        server = serving.HttpServer(settings.http_server, app, sock)
        server_task = asyncio.create_task(server.serve())
        extra = serving.start_extra(settings, sock, node.name)  # MIRROR_NEURON_API_PROCESSES − 1
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
    if ops is not None:
        ops[0].should_exit = True
        await asyncio.gather(ops[1], return_exceptions=True)
    tracing.shutdown()
    await db.dispose()
    return EXIT_FAILED if node.fenced_out.is_set() else EXIT_OK


def _run_service(main: Coroutine[Any, Any, int]) -> int:
    """Run a long-lived process (`serve`, `worker`) on uvloop where it is installed.

    uvloop's event loop and uvicorn's httptools parser (both installed with the project on
    Linux and macOS) cut the CPU a request and a step cost: see README "Benchmarks".
    """
    from app.runtime import memory

    memory.limit_arenas()
    memory.tune_gc()
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def cmd_serve(args: argparse.Namespace) -> int:
    """API + runtime (as configured)."""
    settings = _settings()
    _logging(settings)
    return _run_service(_serve(settings, api=settings.api_enabled))


def cmd_worker(args: argparse.Namespace) -> int:
    """Runtime only, no HTTP."""
    env = dict(os.environ, MIRROR_NEURON_API_ENABLED="0")
    try:
        settings = Settings.from_env(env)
    except ConfigError as exc:
        print(f"mirror-neuron: {exc}", file=sys.stderr)
        return EXIT_USAGE
    _logging(settings)
    return _run_service(_serve(settings, api=False))


async def _with_db(work: Any, url: str | None = None) -> Any:
    from app.store.database import Database

    db = Database(url or _settings(serving=False).database_url)
    try:
        return await work(db)
    finally:
        await db.dispose()


def cmd_migrate(args: argparse.Namespace) -> int:
    """Upgrade the database to the newest migration."""
    from app.store.database_url import failure, shown
    from app.store.migrate import head_revision, upgrade_to_head

    async def work(db: Any) -> None:
        await upgrade_to_head(db.writer)

    settings = _settings(serving=False)
    _logging(settings)
    try:
        asyncio.run(_with_db(work, settings.database_url))
    except Exception as exc:
        log.error("migration of %s failed: %s", shown(settings.database_url), failure(exc, settings.database_url))
        return EXIT_FAILED
    print(f"database at revision {head_revision()}")
    return EXIT_OK


def cmd_rebuild(args: argparse.Namespace) -> int:
    """Drop and replay every projection."""
    from app.store.rebuild import rebuild

    started = time.monotonic()
    count = asyncio.run(_with_db(rebuild))
    elapsed = time.monotonic() - started
    print(f"rebuilt projections from {count} events in {elapsed:.2f} s")
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
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


# ------------------------------------------------------------------ client side


class ApiError(Exception):
    """An HTTP error answer."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"HTTP {status}: {body}")
        self.status = status
        self.body = body


def _base_url(args: argparse.Namespace) -> str:
    if args.url:
        return str(args.url).rstrip("/")
    port = os.environ.get("MIRROR_NEURON_API_PORT", "4000")
    return f"http://127.0.0.1:{port}"


def _request(args: argparse.Namespace, method: str, path: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(_base_url(args) + path, data=data, method=method)
    request.add_header("Accept", "application/json")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    token = args.token or os.environ.get("MIRROR_NEURON_API_TOKEN")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = raw.decode(errors="replace")
        raise ApiError(exc.code, parsed) from None
    except urllib.error.URLError as exc:
        raise ApiError(0, {"error": f"cannot reach {_base_url(args)}: {exc.reason}"}) from None


def _print_error(exc: ApiError) -> None:
    body = exc.body
    if isinstance(body, dict):
        print(f"error: {body.get('error')}", file=sys.stderr)
        for line in body.get("errors", []) or []:
            print(f"  - {line}", file=sys.stderr)
    else:
        print(f"error: {body}", file=sys.stderr)


def _submission(target: str | None, bundle: str | None) -> dict[str, Any]:
    if bundle:
        return {"bundle_id": bundle}
    assert target is not None
    path = Path(target)
    if path.is_dir():
        manifest_path = path / "manifest.json"
        if not manifest_path.is_file():
            raise SystemExit(f"error: {path} has no manifest.json")
        graph_id = json.loads(manifest_path.read_text()).get("graph_id")
        if not isinstance(graph_id, str) or not graph_id:
            raise SystemExit(f"error: {manifest_path} has no graph_id")
        return {"bundle_id": graph_id}
    if not path.is_file():
        raise SystemExit(f"error: {path} does not exist")
    try:
        body = json.loads(path.read_text())
    except ValueError as exc:
        raise SystemExit(f"error: {path} is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise SystemExit(f"error: {path} must contain a JSON object")
    return body


def cmd_submit(args: argparse.Namespace) -> int:
    """Submit a manifest file, a bundle directory or a registered bundle id."""
    if not args.target and not args.bundle:
        print("error: give a manifest file, a bundle directory or --bundle ID", file=sys.stderr)
        return EXIT_USAGE
    body = _submission(args.target, args.bundle)
    try:
        answer = _request(args, "POST", "/api/v1/jobs", body)
    except ApiError as exc:
        if exc.status == 404 and "bundle_id" in body:
            print(
                f"error: bundle {body['bundle_id']} is not registered on the server; start the server with "
                "MIRROR_NEURON_BUNDLES_DIR set to the directory that contains it",
                file=sys.stderr,
            )
        else:
            _print_error(exc)
        return EXIT_FAILED
    job_id = answer["job_id"]
    print(job_id)
    if not args.wait:
        return EXIT_OK
    return _wait(args, job_id)


def _wait(args: argparse.Namespace, job_id: str) -> int:
    deadline = time.monotonic() + args.timeout
    last = None
    while time.monotonic() < deadline:
        try:
            job = _request(args, "GET", f"/api/v1/jobs/{job_id}")["job"]
        except ApiError as exc:
            _print_error(exc)
            return EXIT_FAILED
        if job["status"] != last:
            last = job["status"]
            print(f"{job_id}: {last}", file=sys.stderr)
        if job["status"] in ("completed", "failed", "cancelled"):
            print(json.dumps(job["result"], indent=2))
            return EXIT_OK if job["status"] == "completed" else EXIT_FAILED
        time.sleep(0.25)
    print(f"{job_id}: still {last} after {args.timeout} s", file=sys.stderr)
    return EXIT_TIMEOUT


def cmd_jobs(args: argparse.Namespace) -> int:
    """List jobs, newest first."""
    query = f"?limit={args.limit}" + (f"&status={args.status}" if args.status else "")
    try:
        data = _request(args, "GET", "/api/v1/jobs" + query)["data"]
    except ApiError as exc:
        _print_error(exc)
        return EXIT_FAILED
    for job in data:
        print(f"{job['job_id']}  {job['status']:<9}  {job['updated_at']}  {job.get('last_event') or ''}")
    return EXIT_OK


def cmd_events(args: argparse.Namespace) -> int:
    """Print a job's events, one JSON object per line."""
    try:
        data = _request(args, "GET", f"/api/v1/jobs/{args.job_id}/events")["data"]
    except ApiError as exc:
        _print_error(exc)
        return EXIT_FAILED
    for event in data:
        print(json.dumps(event, ensure_ascii=False))
    return EXIT_OK


def _print_job_audit(result: Any) -> None:
    verdict = "OK" if result.ok else "FAILED"
    print(f"{verdict} {result.job_id}: {result.events} events, head {result.head or '-'}")
    for finding in result.findings:
        print(f"  - {finding}")


def _audit_cleanups(args: argparse.Namespace) -> int:
    from app.audit import audit_cleanups
    from app.store.database import Database
    from app.store.database_url import DatabaseUrlError, async_url

    if not args.database_url:
        print("error: --cleanups needs --database-url (it reads the system stream)", file=sys.stderr)
        return EXIT_USAGE
    archive = None
    if args.archive:
        with open(args.archive, encoding="utf-8") as handle:
            archive = [json.loads(line) for line in handle if line.strip()]

    try:
        url = async_url(args.database_url)
    except DatabaseUrlError as exc:
        print(f"error: --database-url {exc}", file=sys.stderr)
        return EXIT_USAGE

    async def work() -> Any:
        db = Database(url)
        try:
            return await audit_cleanups(db, archive)
        finally:
            await db.dispose()

    result = asyncio.run(work())
    for finding in result.findings:
        print(f"  - {finding}")
    verdict = "OK" if not result.findings else "FAILED"
    print(f"{verdict}: {result.records} jobs_cleaned records, {result.checked_against_archive} checked against the archive")
    return EXIT_OK if not result.findings else EXIT_FAILED


def cmd_audit(args: argparse.Namespace) -> int:
    """Replay jobs' events over HTTP and compare with what the API shows."""
    from app.audit import AuditError, Client, all_job_ids, audit_job

    if args.cleanups:
        return _audit_cleanups(args)
    if not args.job_id and not args.all:
        print("error: give a job id, --all or --cleanups", file=sys.stderr)
        return EXIT_USAGE
    client = Client(_base_url(args), args.token or os.environ.get("MIRROR_NEURON_API_TOKEN"))
    failed = audited = 0
    try:
        for job_id in all_job_ids(client) if args.all else [args.job_id]:
            result = audit_job(client, job_id)
            audited += 1
            failed += 0 if result.ok else 1
            _print_job_audit(result)
    except AuditError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"audit: {audited - failed} of {audited} jobs replay to exactly what the API shows")
    return EXIT_OK if failed == 0 else EXIT_FAILED


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mirror-neuron", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="run the HTTP API and the runtime node").set_defaults(func=cmd_serve)
    sub.add_parser("worker", help="run a runtime node without the HTTP API").set_defaults(func=cmd_worker)
    sub.add_parser("migrate", help="apply database migrations").set_defaults(func=cmd_migrate)
    sub.add_parser("rebuild", help="drop and replay every projection from events").set_defaults(func=cmd_rebuild)
    sub.add_parser("verify", help="diff a replay of the events against the projections").set_defaults(func=cmd_verify)
    for name, func, help_text in (
        ("submit", cmd_submit, "submit a manifest, a bundle directory or --bundle ID"),
        ("jobs", cmd_jobs, "list jobs"),
        ("events", cmd_events, "print a job's events"),
        ("audit", cmd_audit, "replay events over HTTP and compare with the API (or --cleanups)"),
    ):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--url", help="server base URL (default http://127.0.0.1:$MIRROR_NEURON_API_PORT)")
        p.add_argument("--token", help="bearer token (default $MIRROR_NEURON_API_TOKEN)")
        p.set_defaults(func=func)
        if name == "submit":
            p.add_argument("target", nargs="?", help="manifest.json file or bundle directory")
            p.add_argument("--bundle", help="id of a bundle registered on the server")
            p.add_argument("--wait", action="store_true", help="wait for a terminal status")
            p.add_argument("--timeout", type=float, default=600.0, help="seconds to wait (default 600)")
        elif name == "audit":
            p.add_argument("job_id", nargs="?")
            p.add_argument("--all", action="store_true", help="audit every job")
            p.add_argument("--cleanups", action="store_true", help="check jobs_cleaned records (database access)")
            p.add_argument("--database-url", help="with --cleanups: the database to read")
            p.add_argument("--archive", help="with --cleanups: NDJSON of archived job events to check against")
        elif name == "jobs":
            p.add_argument("--limit", type=int, default=100)
            p.add_argument("--status", help="comma-separated statuses")
        else:
            p.add_argument("job_id")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `mirror-neuron` console script."""
    args = _parser().parse_args(argv)
    try:
        return int(args.func(args))
    except BrokenPipeError:
        # The reader went away (`mirror-neuron events <id> | head`): stop quietly, as Unix tools
        # do, and keep the interpreter's final flush of stdout from failing again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILED


if __name__ == "__main__":
    raise SystemExit(main())
