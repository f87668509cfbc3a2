"""The fixed stack's floor: the least a request can cost on Litestar + uvicorn + asyncpg.

A Litestar app served exactly as `mirror-neuron serve` serves ours (the same `HttpServer` of
app/http/serving.py: uvicorn with uvloop and httptools or Granian, no access log, as many processes
as MIRROR_NEURON_API_PROCESSES) that does only the database work of each benchmarked
request and nothing of the runtime's:

* `POST /api/v1/jobs`: decode the JSON body, one `INSERT` of it and its id, autocommit
  (no validation, no events, no hash chain, no projections), answer 201 with the id;
* `GET /api/v1/jobs/{id}`: the three reads our details make (job row, its agents, its 25 newest
  events) on the seeded tables, answered as they come from the driver;
* `GET /api/v1/jobs?limit=100`: the newest 100 jobs' summary columns.

Measured with the same wrk scripts, it tells how much of a gap to a target is our work and how
much the stack and the machine would leave even with no work at all. Postgres only.

    python -m bench.floor --dsn postgresql://postgres@127.0.0.1:5432/db --port 4200
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import uuid
from typing import Any

import asyncpg
import msgspec
from litestar import Litestar, Request, get, post

from app.http.serving import die_with_parent

_JOB = "SELECT * FROM jobs WHERE job_id = $1"
_AGENTS = "SELECT * FROM agents WHERE job_id = $1"
_RECENT = "SELECT * FROM events WHERE stream_id = $1 AND sequence > 0 ORDER BY sequence DESC LIMIT 25"
_PAGE = (
    "SELECT job_id, graph_id, job_name, status, submitted_at, updated_at, placement_policy, recovery_policy,"
    " executor_count, nodes, sandbox_names, last_event FROM jobs ORDER BY updated_at DESC, job_id DESC LIMIT $1"
)
_TABLE = "CREATE TABLE IF NOT EXISTS floor_jobs (job_id text PRIMARY KEY, body text NOT NULL)"


def create_app(pool: asyncpg.Pool) -> Litestar:
    @post("/api/v1/jobs", status_code=201)
    async def submit(request: Request[Any, Any, Any]) -> dict[str, str]:
        raw = await request.body()
        body = msgspec.json.decode(raw)
        job_id = f"{body.get('graph_id', 'job')}-{uuid.uuid4().hex}"
        async with pool.acquire() as conn:
            await conn.execute("INSERT INTO floor_jobs (job_id, body) VALUES ($1, $2)", job_id, raw.decode())
        return {"job_id": job_id, "status": "pending"}

    @get("/api/v1/jobs/{job_id:str}")
    async def details(job_id: str) -> dict[str, Any]:
        async with pool.acquire() as conn:
            job = await conn.fetchrow(_JOB, job_id)
            agents = await conn.fetch(_AGENTS, job_id)
            recent = await conn.fetch(_RECENT, job_id)
        return {
            "job": dict(job) if job else None,
            "agents": [dict(a) for a in agents],
            "recent_events": [dict(e) for e in recent],
        }

    @get("/api/v1/jobs")
    async def page(limit: int = 100) -> dict[str, Any]:
        async with pool.acquire() as conn:
            rows = await conn.fetch(_PAGE, limit)
        return {"data": [dict(r) for r in rows]}

    @get("/api/v1/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return Litestar([submit, details, page, health], openapi_config=None)


async def serve(dsn: str, sock: socket.socket, server: str) -> None:
    """Serve the floor on `sock` with the ASGI server `mirror-neuron serve` uses (app/http/serving.py)."""
    from app.http.serving import HttpServer

    pool = await asyncpg.create_pool(dsn, min_size=10, max_size=10)
    http = HttpServer(server, create_app(pool), sock)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, http.stop)
    await http.serve()
    await pool.close()


class FloorServer:
    """`python -m bench.floor` in its own process on a free port, for the length of a `with`."""

    def __init__(self, cfg: Any, dsn: str, name: str) -> None:
        from bench.common import free_port

        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.dsn = dsn
        self._log = cfg.workdir / f"floor_{name}_{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> FloorServer:
        from bench.common import PYTHON, ROOT, wait_ready

        out = self._log.open("wb")
        self.proc = subprocess.Popen(
            [PYTHON, "-m", "bench.floor", "--dsn", self.dsn, "--port", str(self.port)],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
        )
        wait_ready(self.proc, self.base + "/api/v1/health", self._log)
        return self

    def __exit__(self, *exc: Any) -> None:
        from bench.common import terminate

        if self.proc is not None:
            terminate(self.proc)


async def _create_table(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(_TABLE)
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", required=True, help="libpq DSN of a database migrated by mirror-neuron")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--server", choices=("uvicorn", "granian"),
                        default=os.environ.get("MIRROR_NEURON_HTTP_SERVER", "uvicorn").strip().lower(),
                        help="the ASGI server (default: as `mirror-neuron serve`, MIRROR_NEURON_HTTP_SERVER)")
    parser.add_argument("--processes", type=int, default=int(os.environ.get("MIRROR_NEURON_API_PROCESSES") or 1),
                        help="processes sharing the port (default: as ours, MIRROR_NEURON_API_PROCESSES)")
    args = parser.parse_args()
    import uvloop

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    sock.listen(2048)
    asyncio.run(_create_table(args.dsn))  # once, before forking: concurrent CREATE TABLE IF NOT EXISTS can fail
    children = []
    for _ in range(args.processes - 1):  # like MIRROR_NEURON_API_PROCESSES: the others share the socket
        pid = os.fork()
        if pid == 0:
            children = []
            die_with_parent()
            break
        children.append(pid)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve(args.dsn, sock, args.server))
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        os.waitpid(pid, 0)


if __name__ == "__main__":
    main()
