"""What the network fault tests share: a job whose result proves it ran once, a client that
retries, and the checks of exactly once (tests/runtime/test_network_faults.py)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import urllib.error
from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import make_url

from app.store import event_store
from app.store.database import Database
from app.store.rebuild import verify
from app.store.tables import events, jobs, nodes
from tests.faultproxy import FaultProxy
from tests.runtime.processes import ROOT, NodeProcess

TERMINAL = ("completed", "failed", "cancelled")
ONCE_PER_JOB = (
    "job_submitted", "job_queued", "job_scheduled", "job_running", "job_completed", "job_failed", "job_cancelled"
)


ONCE_PER_STEP = ("executor_lease_requested", "sandbox_job_completed", "sensor_observed", "aggregator_duplicate_ignored")


def doubling_job(k: int, sleep_seconds: float = 0, gate: Path | None = None) -> dict[str, Any]:
    """worker (executor) doubles `n` and emits it; sink (aggregator) completes the job with it.

    Each job has one executor step and one builtin step, so its log holds every kind of commit
    a node makes: the executor's received / lease events each on their own, its step, the sink's
    chained step and the completion. With a `gate`, the worker waits until that file exists.
    """
    wait = "" if gate is None else f"while [ ! -e {gate} ]; do sleep 0.1; done; "
    command = (
        f"{wait}sleep {sleep_seconds}; n=$(tr -dc 0-9 < {{input_file}}); "
        "printf '{\"emit_messages\":[{\"type\":\"doubled\",\"body\":{\"n\":%d}}]}' $((n*2))"
    )
    return {
        "manifest_version": "1.0",
        "graph_id": "fault_v1",
        "job_name": f"double {k}",
        "entrypoints": ["worker"],
        "initial_inputs": {"worker": [{"n": k}]},
        "nodes": [
            {"node_id": "worker", "agent_type": "executor", "type": "generic", "config": {"command": command}},
            {"node_id": "sink", "agent_type": "aggregator", "type": "reduce", "config": {"complete_on_message": True}},
        ],
        "edges": [{"edge_id": "w2s", "from_node": "worker", "to_node": "sink", "message_type": "doubled"}],
    }


def submit_all(
    node: NodeProcess, count: int, sleep_seconds: float = 0, gate: Path | None = None
) -> dict[str, int]:
    """Submit `count` jobs, each with its own Idempotency-Key, retrying until answered: job id → k."""
    submitted: dict[str, int] = {}
    for k in range(count):
        job_id = submit_with_retries(node, doubling_job(k, sleep_seconds, gate), f"fault-{k}")
        submitted[job_id] = k
    assert len(submitted) == count  # a retried submit never made a second job
    return submitted


def submit_with_retries(node: NodeProcess, body: dict[str, Any], key: str) -> str:
    deadline = time.monotonic() + 60
    while True:
        try:
            status, answer = node.request("POST", "/api/v1/jobs", body, headers={"Idempotency-Key": key})
            if status in (200, 201):
                return str(answer["job_id"])
            assert status == 503, (status, answer)  # the database did not answer: unknown outcome
        except (OSError, urllib.error.URLError):
            pass
        assert time.monotonic() < deadline, f"submit {key} never answered"
        time.sleep(0.2)


def proxied_url(database_url: str, proxy: FaultProxy) -> str:
    """The database URL with the proxy's port in place of the server's."""
    return make_url(database_url).set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)


def start_proxy(database_url: str, seed: int) -> FaultProxy:
    url = make_url(database_url)
    return FaultProxy(url.host or "127.0.0.1", url.port or 5432, seed=seed).start()


def read(database_url: str, reader: Any) -> Any:
    """Run `reader(db)` on a fresh connection pool straight to the database (no proxy)."""

    async def run() -> Any:
        db = Database(database_url)
        try:
            return await reader(db)
        finally:
            await db.dispose()

    return asyncio.run(run())


async def statuses(db: Database) -> dict[str, str]:
    async with db.read() as conn:
        return {r.job_id: r.status for r in await conn.execute(select(jobs.c.job_id, jobs.c.status))}


def wait_terminal(database_url: str, job_ids: list[str], timeout: float) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        found = read(database_url, statuses)
        if all(found.get(j) in TERMINAL for j in job_ids):
            return found
        waiting = [j for j in job_ids if found.get(j) not in TERMINAL]
        assert time.monotonic() < deadline, f"{len(waiting)} jobs not finished, e.g. {waiting[:3]}"
        time.sleep(0.5)


def duplicate_effects(stream: list[dict[str, Any]]) -> list[str]:
    """Every effect recorded twice in one job's stream (an empty list when there is none).

    Keyed by what identifies each effect: a lifecycle event once per job; a delivery per message
    id; a processed message, an aggregator receipt per (agent, message); a recovery per attempt;
    an executor lease by its id. What a recovery re-runs (SPEC §4.7 rule 8: the received
    message, the lease request, the run) may repeat once per recovery, never within one owner's
    turn; the turns are told apart by `job_recovery_started`.
    """
    seen: Counter[tuple[Any, ...]] = Counter()
    problems: list[str] = []
    turn = 0
    handling: dict[str | None, str | None] = {}
    for e in stream:
        kind, agent, p = e["type"], e["agent_id"], e["payload"]
        if kind == "job_recovery_started":
            turn += 1
        key: tuple[Any, ...]
        if kind in ONCE_PER_JOB:
            key = (kind,)
        elif kind == "message_delivered":
            key = (kind, p["message"]["envelope"]["message_id"])
        elif kind in ("message_processed", "aggregator_received"):
            key = (kind, agent, p["message_id"])
        elif kind == "job_recovery_started":
            key = (kind, p["attempt"])
        elif kind == "agent_recovered":
            key = (kind, agent, p["attempt"])
        elif kind in ("executor_lease_acquired", "executor_lease_released"):
            key = (kind, p["lease_id"])
        elif kind == "agent_message_received":
            handling[agent] = p["message_id"]
            key = (kind, agent, p["message_id"], turn)
        elif kind == "executor_attempt_failed":
            key = (kind, agent, handling.get(agent), turn, p["attempt"])
        elif kind in ONCE_PER_STEP:  # once per message an agent handles in one owner's turn
            key = (kind, agent, handling.get(agent), turn)
        else:  # custom events (a step may record several of one type), pauses, dead letters
            continue
        seen[key] += 1
        if seen[key] == 2:
            problems.append(f"{kind} twice: {key} (sequence {e['sequence']})")
    return problems


async def job_streams(db: Database, job_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    async with db.read() as conn:
        return {
            job_id: [
                {"type": e.type, "agent_id": e.agent_id, "payload": e.payload, "sequence": e.sequence,
                 "position": e.position}
                for e in await event_store.read_stream(conn, job_id)
            ]
            for job_id in job_ids
        }


def assert_exactly_once(database_url: str, submitted: dict[str, int], audit_url: str) -> dict[str, list[dict[str, Any]]]:
    """Every job completed once with its own result, no effect twice, `verify` and `audit --all` clean."""
    streams = read(database_url, lambda db: job_streams(db, list(submitted)))
    found = read(database_url, statuses)
    assert len(found) == len(submitted), "a job was submitted twice"
    problems: list[str] = []
    for job_id, k in submitted.items():
        stream = streams[job_id]
        terminal = [e for e in stream if e["type"] in ("job_completed", "job_failed", "job_cancelled")]
        if [e["type"] for e in terminal] != ["job_completed"] or terminal[0] is not stream[-1]:
            problems.append(f"{job_id}: ended {[e['type'] for e in terminal]}")
            continue
        output = terminal[0]["payload"]["result"]["output"]
        if output["count"] != 1 or output["last_message"] != {"n": 2 * k}:
            problems.append(f"{job_id}: result {output} for n={k}")
        problems += [f"{job_id}: {p}" for p in duplicate_effects(stream)]
    assert problems == [], problems[:20]
    assert read(database_url, verify) == []
    audit = subprocess.run(
        [sys.executable, "-m", "app", "audit", "--all", "--url", audit_url],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert audit.returncode == 0, audit.stdout[-3000:] + audit.stderr[-3000:]
    return streams


async def incarnation_of(db: Database, name: str) -> str:
    async with db.read() as conn:
        return str((await conn.execute(select(nodes.c.incarnation).where(nodes.c.name == name))).scalar_one())


async def commands_of(db: Database, incarnation: str) -> list[tuple[str, int, str]]:
    """(stream, position, command id) of every command a node incarnation committed."""
    async with db.read() as conn:
        rows = await conn.execute(
            select(events.c.stream_id, events.c.position, events.c.command_id)
            .where(events.c.command_id.like(f"{incarnation}.%"))
            .order_by(events.c.position)
        )
        return [(r.stream_id, r.position, r.command_id) for r in rows]
