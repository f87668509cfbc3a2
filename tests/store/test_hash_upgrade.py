"""Upgrading a v1.0 database to RFC 8785 hashing (SPEC C.1.3): no event row is rewritten, old
events verify as pyjson-sha256, new ones as jcs-sha256, and the chain runs on across the change.

The v1.0 history is the recorded golden `pause_message_resume` up to its pause, inserted as v1.0
stored it (payload = json.dumps text, no hash_alg column) into a database at revision 0001.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from alembic import command
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from app.audit import ChainCheck
from app.domain.canonical import legacy_json
from app.domain.job import CancelJob, DeliverExternal, ResumeJob
from app.domain.messages import normalize_message
from app.service import Service
from app.store import event_store
from app.store.database import Database
from app.store.migrate import alembic_config, upgrade_to_head
from app.store.rebuild import rebuild, verify
from tests.conftest import create_pg_database, drop_pg_database
from tests.unit.test_js_verifier import NODE, load_python_verifier, needs_node, run_node_tests

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
PAUSED_AT = 8  # pause_message_resume: sequence 8 is job_paused
# What the operator sends after the upgrade: numbers whose two canonical forms differ.
EXTERNAL = {"type": "manual_result", "payload": {"text": "approved after the upgrade", "score": 1.0, "big": 1e16, "tiny": 1e-7}}


def v1_history() -> list[dict[str, Any]]:
    """The API records of a job written by v1.0, up to its pause."""
    return json.loads((GOLDEN / "pause_message_resume.json").read_text())["events"][:PAUSED_AT]


def _to_revision(connection: Connection, revision: str) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, revision)


async def seed_v1_database(url: str, records: list[dict[str, Any]]) -> None:
    """A database at revision 0001 holding `records` exactly as v1.0 stored them."""
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_to_revision, "0001")
            for position, r in enumerate(records, start=1):
                await conn.execute(
                    text(
                        'INSERT INTO events (position, stream_id, "sequence", event_id, "type", "timestamp", job_id, '
                        "agent_id, payload, hash) VALUES (:p, :s, :q, :i, :t, :ts, :j, :a, :payload, :h)"
                    ),
                    {"p": position, "s": r["job_id"], "q": r["sequence"], "i": r["event_id"], "t": r["type"],
                     "ts": r["timestamp"], "j": r["job_id"], "a": r["agent_id"],
                     "payload": legacy_json(r["payload"]), "h": r["hash"]},
                )
            await conn.execute(text("UPDATE event_positions SET last_position = :n WHERE id = 1"), {"n": len(records)})
    finally:
        await engine.dispose()


async def continue_after_upgrade(db: Database, job_id: str) -> None:
    """The v1.1 upgrade (migrate, rebuild the projections), then the operator's message, resume, cancel."""
    await upgrade_to_head(db.writer)
    await rebuild(db)
    service = Service(db)
    message = normalize_message(
        EXTERNAL, message_id="golden-crossing-1", job_id=job_id, to="sink", timestamp="2026-12-06T07:00:00.000Z",
        correlation_id="golden", default_from="external", default_type="command", default_class="command",
    )
    for command_ in (DeliverExternal("sink", message), ResumeJob(), CancelJob()):
        await service.execute(job_id, command_)


async def api_records(db: Database, job_id: str) -> list[dict[str, Any]]:
    """The job's events as GET /jobs/{id}/events serves them, read as a client reads JSON."""
    async with db.read() as conn:
        rows = await event_store.read_stream_rows(conn, job_id)
    return [{**event_store.api_record(r), "payload": json.loads(r["payload"])} for r in rows]


async def test_a_v1_database_upgrades_and_its_chain_runs_on(backend: str, tmp_path: Path) -> None:
    if backend == "sqlite":
        url, name = f"sqlite+aiosqlite:///{tmp_path / 'v1.db'}", None
    else:
        name, url = await create_pg_database("mn_upgrade")
    history = v1_history()
    job_id = history[0]["job_id"]
    db = Database(url)
    try:
        await seed_v1_database(url, history)
        await continue_after_upgrade(db, job_id)
        records = await api_records(db, job_id)
        assert await verify(db) == []  # the projections are the replay of the log
    finally:
        await db.dispose()
        if name is not None:
            await drop_pg_database(name)
    # No v1.0 row was rewritten: same text, same hash, labelled by the column's default.
    assert [(r["payload"], r["hash"]) for r in records[:PAUSED_AT]] == [(r["payload"], r["hash"]) for r in history]
    assert [r["hash_alg"] for r in records] == ["pyjson-sha256"] * PAUSED_AT + ["jcs-sha256"] * 3
    assert [r["type"] for r in records[PAUSED_AT:]] == ["message_delivered", "job_resumed", "job_cancelled"]
    chain = ChainCheck(job_id)
    for record in records:
        chain.check(record)
    assert chain.findings == []
    count, head, bad = load_python_verifier().verify(records)
    assert (count, head, bad) == (len(records), records[-1]["hash"], None)


@needs_node
async def test_the_upgraded_chain_verifies_in_node(tmp_path: Path) -> None:
    # The same upgrade on SQLite, checked by the console's verifier: its v1.0 events are also
    # valid JCS text (no floats in them), so all verify; the later ones carry 1.0, 1e16 and 1e-7.
    url = f"sqlite+aiosqlite:///{tmp_path / 'v1.db'}"
    history = v1_history()
    await seed_v1_database(url, history)
    db = Database(url)
    try:
        await continue_after_upgrade(db, history[0]["job_id"])
        records = await api_records(db, history[0]["job_id"])
    finally:
        await db.dispose()
    case = {"name": "upgraded v1.0 database", "events": records,
            "expect": {"ok": True, "count": len(records), "verified": len(records), "legacy": [], "firstBad": None}}
    assert NODE is not None
    finished = run_node_tests({"canonical": [], "chains": [case]}, tmp_path)
    assert finished.returncode == 0 and "# fail 0" in finished.stdout, finished.stdout[-4000:]
