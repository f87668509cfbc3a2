"""Faults (issue 6 item 3): a Postgres restart under load, an executor flooding its output, and a
SQLite database on a read-only or full disk.

The Postgres test stops and starts the machine's shared PostgreSQL server (the one every test
uses): the outage is kept to a few seconds and the test always starts the server again and waits
for `pg_isready` before it ends, whatever happened. The SQLite tests mount a small tmpfs (root).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from app.config import Settings
from app.http.app import create_app
from app.service import Service
from app.store.database import Database, is_unavailable
from app.store.rebuild import verify
from app.store.tables import agents, events, job_leases, jobs
from tests.api.conftest import lifecycle_manifest
from tests.conftest import create_pg_database, drop_pg_database, migrate
from tests.replay import compare_with_api
from tests.runtime.processes import ROOT, NodeProcess, wait_for

TERMINAL = ("completed", "failed", "cancelled")
TERMINAL_EVENTS = ("job_completed", "job_failed", "job_cancelled")
UNAVAILABLE = {"error": "database unavailable"}
MiB = 1024 * 1024


def executor_job(graph_id: str, command: str) -> dict[str, Any]:
    """One executor that completes the job with its output payload."""
    return {
        "graph_id": graph_id,
        "manifest_version": "1.0",
        "nodes": [
            {
                "node_id": "work",
                "agent_type": "executor",
                "role": "root",
                "config": {"command": command, "complete_job": True},
            }
        ],
    }


def audit(node: NodeProcess, job_id: str) -> dict[str, Any]:
    """The job's details after checking it against an independent replay of its events."""
    status, details = node.request("GET", f"/api/v1/jobs/{job_id}")
    assert status == 200, (job_id, details)
    status, body = node.request("GET", f"/api/v1/jobs/{job_id}/events")
    assert status == 200, body
    recorded = body["data"]
    assert compare_with_api(recorded, details) == [], job_id
    terminal = [e for e in recorded if e["type"] in TERMINAL_EVENTS]
    assert len(terminal) == 1 and terminal[0] == recorded[-1], (job_id, [e["type"] for e in recorded])
    return dict(details)


# ------------------------------------------------------------------------------------ Postgres restart

PG_VERSION = sorted(os.listdir("/etc/postgresql"))[0] if os.path.isdir("/etc/postgresql") else "15"


def pg_cluster(action: str) -> None:
    """Stop or start the local PostgreSQL cluster."""
    command = ["pg_ctlcluster", "--skip-systemctl-redirect", PG_VERSION, "main", action]
    subprocess.run(command, check=True, timeout=120, capture_output=True)


def pg_ready() -> bool:
    """True when PostgreSQL at 127.0.0.1:5432 accepts connections."""
    probe = subprocess.run(["pg_isready", "-h", "127.0.0.1", "-p", "5432", "-q"], timeout=30)
    return probe.returncode == 0


@contextmanager
def postgres_down() -> Iterator[None]:
    """Stop the shared server for the block; always start it again and wait until it answers."""
    pg_cluster("stop")
    try:
        yield
    finally:
        if not pg_ready():
            pg_cluster("start")
        wait_for(pg_ready, 120, "PostgreSQL to accept connections again")


@dataclass
class Submitter:
    """Submits jobs in a thread until stopped, recording what was acknowledged and what was refused."""

    node: NodeProcess
    bodies: list[dict[str, Any]]
    acknowledged: list[str] = field(default_factory=list)
    refused: list[tuple[int, Any]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        count = 0
        while not self.stop.is_set():
            body = self.bodies[count % len(self.bodies)]
            count += 1
            try:
                status, answer = self.node.request("POST", "/api/v1/jobs", body)
            except OSError as exc:  # the node itself must never stop answering
                self.refused.append((0, repr(exc)))
                continue
            if status == 201:
                self.acknowledged.append(answer["job_id"])
            else:
                self.refused.append((status, answer))
            time.sleep(0.05)

    def acknowledged_after(self, mark: int) -> list[str]:
        return self.acknowledged[mark:]


def _ready_status(node: NodeProcess) -> tuple[int, Any]:
    try:
        return node.request("GET", "/api/v1/health/ready")
    except OSError as exc:
        return 0, repr(exc)


def _status(node: NodeProcess, job_id: str) -> str:
    return str(node.request("GET", f"/api/v1/jobs/{job_id}")[1]["job"]["status"])


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh migrated Postgres database of its own (the restart test needs no SQLite twin)."""
    name, url = asyncio.run(create_pg_database("mn_fault"))
    asyncio.run(migrate(url))
    try:
        yield url
    finally:
        asyncio.run(drop_pg_database(name))


def test_postgres_restart_loses_nothing_acknowledged(pg_url: str, tmp_path: Path) -> None:
    manifest = json.loads((ROOT / "examples" / "manifests" / "research_flow.json").read_text())
    bodies = [manifest, executor_job("fault_sleep", "sleep 1; echo done")]
    # A lease TTL shorter than the outage: the node must fence itself and recover its own jobs.
    timing = {"MIRROR_NEURON_HEARTBEAT_SECONDS": "0.5", "MIRROR_NEURON_LEASE_TTL_SECONDS": "1.5"}
    node = NodeProcess("fault-node", pg_url, tmp_path, **timing).start()
    submitter = Submitter(node, bodies)
    thread = threading.Thread(target=submitter.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: len(submitter.acknowledged) >= 10, 30, "submissions before the outage")
        running = wait_for(
            lambda: [
                j
                for j in submitter.acknowledged
                if j.startswith("fault_sleep") and _status(node, j) == "running"
            ],
            30,
            "an executor job to run",
        )
        outage_answers: list[tuple[int, Any]] = []
        with postgres_down():
            deadline = time.monotonic() + 2.5
            while time.monotonic() < deadline:
                outage_answers.append(_ready_status(node))
                time.sleep(0.2)
        mark = len(submitter.acknowledged)
        wait_for(lambda: _ready_status(node)[0] == 200, 60, "the node to reconnect")
        wait_for(lambda: len(submitter.acknowledged_after(mark)) >= 5, 60, "submissions after the restart")
    finally:
        submitter.stop.set()
        thread.join(30)
    try:
        assert node.process is not None and node.process.poll() is None, node.log()
        # Readiness said so while the server was down, with a detail that names no host or user.
        unready = [body for status, body in outage_answers if status == 503]
        assert unready, outage_answers
        assert all(
            b["status"] == "unavailable" and b["error"].startswith("database unavailable: ") for b in unready
        )
        assert all("127.0.0.1" not in b["error"] and "postgres" not in b["error"] for b in unready)
        # Refused submissions were refused cleanly: 503 in the envelope, never a 500.
        assert all(status == 503 and answer == UNAVAILABLE for status, answer in submitter.refused), (
            submitter.refused
        )
        # Every acknowledged job exists and ends; nothing is stuck; each passes the replay check.
        acknowledged = submitter.acknowledged
        assert len(set(acknowledged)) == len(acknowledged)
        wait_for(lambda: all(_status(node, j) in TERMINAL for j in acknowledged), 180, "every job to end")
        for job_id in acknowledged:
            assert audit(node, job_id)["job"]["status"] == "completed", job_id
        assert running[0] in acknowledged
        status, nodes = node.request("GET", "/api/v1/nodes")
        assert [(n["name"], n["status"]) for n in nodes["data"]] == [("fault-node", "alive")]
    finally:
        assert node.stop() == 0, node.log()


# ------------------------------------------------------------------------------------ output flood


def _rss_bytes(pid: int) -> int:
    """Resident set size of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


class RssSampler:
    """The peak RSS of a process while the block runs, sampled every 20 ms."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_bytes(self.pid))
            time.sleep(0.02)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


FLOOD = "head -c 120000000 /dev/zero | tr '\\0' x; head -c 110000000 /dev/zero | tr '\\0' y >&2"


def _all_ended(node: NodeProcess, graph_id: str, count: int) -> bool:
    """True when `count` jobs of a graph are terminal (read from the list: no multi-MiB details)."""
    status, page = node.request("GET", f"/api/v1/jobs?graph_id={graph_id}&limit=1000")
    return status == 200 and sum(1 for job in page["data"] if job["status"] in TERMINAL) == count


def _flood(node: NodeProcess, graph_id: str, count: int) -> list[str]:
    ids = [
        node.request("POST", "/api/v1/jobs", executor_job(graph_id, FLOOD))[1]["job_id"] for _ in range(count)
    ]
    wait_for(lambda: _all_ended(node, graph_id, count), 120, f"{count} floods")
    return ids


def test_an_output_flood_is_capped_without_memory_growth(
    database_url: str, db: Database, tmp_path: Path
) -> None:
    node = NodeProcess("flood-node", database_url, tmp_path).start()
    try:
        assert node.process is not None
        # Two warm-up runs let the allocator reach its working size for 1 MiB outputs.
        ids = _flood(node, "flood_warm_a", 1) + _flood(node, "flood_warm_b", 1)
        baseline = _rss_bytes(node.process.pid)
        with RssSampler(node.process.pid) as rss:
            ids += _flood(node, "flood", 2)
        for job_id in ids:
            details = audit(node, job_id)
            assert details["job"]["status"] == "completed", details["job"]["result"]
            sandbox = details["job"]["result"]["output"]["sandbox"]
            assert sandbox["exit_code"] == 0
            assert sandbox["stdout_truncated"] and sandbox["stderr_truncated"]
            assert sandbox["stdout"] == "x" * MiB and sandbox["stderr"] == "y" * MiB
        # 460 MB went through the node's pipes; what it keeps is bounded by the 1 MiB caps.
        assert rss.peak - baseline < 64 * MiB, (baseline, rss.peak)
    finally:
        node.stop()


# ------------------------------------------------------------------------------------ SQLite on a bad disk


@contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A small tmpfs mounted at `path` for the block (needs root)."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def remount(path: Path, mode: str) -> None:
    """Remount a tmpfs read-only (`ro`) or read-write (`rw`)."""
    subprocess.run(["mount", "-o", f"remount,{mode}", str(path)], check=True)


def fill(path: Path) -> Path:
    """Write a file until the filesystem is full."""
    filler = path / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 65536)
    except OSError:
        pass
    try:
        while True:
            os.write(fd, b"\0")
    except OSError:
        pass
    os.close(fd)
    return filler


@asynccontextmanager
async def api_over(url: str) -> AsyncIterator[tuple[Database, httpx.AsyncClient]]:
    """An API client over its own Database on `url`, closed with the block."""
    db = Database(url)
    app = create_app(Settings(), db, Service(db), node_name="disk-node")
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            yield db, client
    finally:
        await db.dispose()


async def history(db: Database) -> dict[str, int]:
    """Row counts of the tables that record history."""
    async with db.read() as conn:
        return {
            table.name: int((await conn.execute(select(func.count()).select_from(table))).scalar_one())
            for table in (events, jobs, agents, job_leases)
        }


async def intact(url: str) -> dict[str, int]:
    """Check the file (integrity_check) and the projections (verify); return the history counts."""
    db = Database(url)
    try:
        async with db.read() as conn:
            assert (await conn.execute(text("PRAGMA integrity_check"))).scalar_one() == "ok"
        assert await verify(db) == []
        return await history(db)
    finally:
        await db.dispose()


def big_manifest() -> dict[str, Any]:
    """A valid submission larger than what is left on a full disk."""
    return {**lifecycle_manifest(), "metadata": {"padding": "p" * 300_000}}


async def _writes_answer_unavailable(client: httpx.AsyncClient, job_id: str) -> None:
    for method, path, body in (
        ("POST", "/api/v1/jobs", big_manifest()),
        ("POST", "/api/v1/jobs", lifecycle_manifest()),
        ("POST", f"/api/v1/jobs/{job_id}/cancel", None),
        ("POST", "/api/v1/jobs/cleanup?all=true", None),
    ):
        response = await client.request(method, path, json=body)
        assert (response.status_code, response.json()) == (503, UNAVAILABLE), (path, response.text)


async def test_sqlite_on_a_read_only_disk_answers_503_and_writes_nothing(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "disk", "8m") as disk:
        url = f"sqlite+aiosqlite:///{disk}/mirror_neuron.db"
        await migrate(url)
        async with api_over(url) as (_, client):
            job_id = (await client.post("/api/v1/jobs", json=lifecycle_manifest())).json()["job_id"]
        before = await intact(url)
        remount(disk, "ro")
        try:
            async with api_over(url) as (_, client):
                await _writes_answer_unavailable(client, job_id)
                # Reads need the WAL index, which a read-only disk cannot hold: 503 as well, never 500.
                for path in ("/api/v1/jobs", f"/api/v1/jobs/{job_id}"):
                    response = await client.get(path)
                    assert response.status_code in (200, 503), response.text
                    if response.status_code == 503:
                        assert response.json() == UNAVAILABLE
                ready = await client.get("/api/v1/health/ready")
                assert ready.status_code == 503 and ready.json()["status"] == "unavailable"
        finally:
            remount(disk, "rw")
        assert await intact(url) == before


async def test_sqlite_on_a_full_disk_answers_503_writes_nothing_and_recovers(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "disk", "8m") as disk:
        url = f"sqlite+aiosqlite:///{disk}/mirror_neuron.db"
        await migrate(url)
        async with api_over(url) as (db, client):
            job_id = (await client.post("/api/v1/jobs", json=lifecycle_manifest())).json()["job_id"]
            before = await history(db)
            filler = fill(disk)
            await _writes_answer_unavailable(client, job_id)
            assert (await client.get(f"/api/v1/jobs/{job_id}")).status_code == 200  # reads still work
            filler.unlink()
            # Space is back: the same process writes again, without a restart.
            response = await client.post("/api/v1/jobs", json=big_manifest())
            assert response.status_code == 201, response.text
        after = await intact(url)
        assert after == {**before, "events": before["events"] + 1, "jobs": 2, "agents": before["agents"] + 2}


# ------------------------------------------------------------------------------------ error mapping


class _TranslatedDriverError(Exception):
    """What SQLAlchemy's asyncpg adapter raises: the driver's SQLSTATE, the driver error as cause."""

    def __init__(self, message: str, sqlstate: str) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


def _wrapped(driver: Exception) -> DBAPIError:
    translated = _TranslatedDriverError(str(driver), getattr(driver, "sqlstate", ""))
    translated.__cause__ = driver
    return DBAPIError("SELECT 1", None, translated)


@pytest.mark.parametrize(
    "driver, unavailable",
    [
        (asyncpg.exceptions.CannotConnectNowError("the database system is shutting down"), True),
        (asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator command"), True),
        (asyncpg.exceptions.TooManyConnectionsError("too many clients"), True),
        (asyncpg.exceptions.DiskFullError("could not extend file"), True),
        (asyncpg.exceptions.ReadOnlySQLTransactionError("read-only transaction"), True),
        (asyncpg.exceptions.UniqueViolationError("duplicate key"), False),
        (asyncpg.exceptions.QueryCanceledError("canceling statement due to statement timeout"), False),
    ],
)
def test_driver_errors_that_mean_the_database_is_unavailable(driver: Exception, unavailable: bool) -> None:
    """A connection that could not even be made is wrapped without `connection_invalidated`."""
    assert is_unavailable(_wrapped(driver)) is unavailable
