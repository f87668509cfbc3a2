"""Record golden histories: run the SPEC §13 scenarios once and store their events and projections.

    python -m tests.golden.record_histories     # rewrites tests/golden/*.json
    python -m tests.golden.record_histories --crossing   # the v1.0 -> v1.1 history only

Run it only when a deliberate change of the event schema is accompanied by upcasters; the
golden test then proves that the recorded (old) histories still replay into the recorded
projections with the current code.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from app.config import Settings
from app.domain.canonical import legacy_json, sha256_hex
from app.domain.job import CancelJob, DeliverExternal, PauseJob, ResumeJob
from app.domain.manifest import normalize_manifest
from app.domain.messages import normalize_message
from app.domain.projection import fold
from app.runtime.node import Node
from app.runtime.runner import new_message_id
from app.service import Service
from app.store import event_store
from app.store.database import Database
from app.store.migrate import upgrade_to_head
from app.store.projector import agent_to_row, job_to_row

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).resolve().parent
EXAMPLES = ROOT / "examples"
TERMINAL = ("job_completed", "job_failed", "job_cancelled")


async def _events(db: Database, job_id: str) -> list[Any]:
    async with db.read() as conn:
        return await event_store.read_stream(conn, job_id)


async def _until(db: Database, job_id: str, done: Callable[[list[Any]], bool]) -> list[Any]:
    for _ in range(1200):
        events = await _events(db, job_id)
        if events and done(events):
            return events
        await asyncio.sleep(0.05)
    raise TimeoutError(job_id)


async def _submit(service: Service, db: Database, *, raw: dict[str, Any] | None = None, bundle_id: str | None = None) -> str:
    if bundle_id is not None:
        from sqlalchemy import select

        from app.store.tables import bundles

        async with db.read() as conn:
            view = json.loads((await conn.execute(select(bundles.c.view).where(bundles.c.bundle_id == bundle_id))).scalar_one())
        manifest, bundle = view["manifest"], {"bundle_id": bundle_id, "fingerprint": view["fingerprint"], "path": view["path"]}
        body: dict[str, Any] = {"bundle_id": bundle_id}
    else:
        assert raw is not None
        manifest, bundle, body = normalize_manifest(raw), None, raw
    submitted = await service.submit(
        manifest=manifest, bundle=bundle, idempotency_key=None, request_sha256=sha256_hex(legacy_json(body))
    )
    return submitted.job_id


def _manifest(name: str) -> dict[str, Any]:
    return dict(json.loads((EXAMPLES / "manifests" / name).read_text()))


async def _pause_message_resume(service: Service, db: Database) -> str:
    job_id = await _submit(service, db, raw=_manifest("pause_resume.json"))
    await _until(db, job_id, lambda es: any(e.type == "message_processed" for e in es))
    await service.execute(job_id, PauseJob())
    message = normalize_message(
        {"type": "manual_result", "payload": {"text": "approved while paused"}}, message_id=new_message_id(),
        job_id=job_id, to="sink", timestamp="2026-01-01T00:00:00.000Z", correlation_id="golden",
        default_from="external", default_type="command", default_class="command",
    )
    await service.execute(job_id, DeliverExternal("sink", message))
    await service.execute(job_id, ResumeJob())
    return job_id


async def _cancelled(service: Service, db: Database) -> str:
    manifest = _manifest("pause_resume.json")
    manifest["nodes"][1]["config"] = {"complete_after": 10}
    job_id = await _submit(service, db, raw=manifest)
    await _until(db, job_id, lambda es: any(e.type == "message_processed" for e in es))
    await service.execute(job_id, CancelJob())
    return job_id


SCENARIOS: dict[str, Callable[[Service, Database], Awaitable[str]]] = {
    "research_flow": lambda s, d: _submit(s, d, raw=_manifest("research_flow.json")),
    "prime_sweep_4_workers": lambda s, d: _submit(s, d, bundle_id="prime_sweep_4_workers"),
    "shell_python_chain": lambda s, d: _submit(s, d, bundle_id="shell_python_chain_v1"),
    "shell_python_chain_fail_exit": lambda s, d: _submit(s, d, bundle_id="shell_python_chain_fail_exit_v1"),
    "shell_python_chain_fail_pool": lambda s, d: _submit(s, d, bundle_id="shell_python_chain_fail_pool_v1"),
    "shell_python_chain_fail_timeout": lambda s, d: _submit(s, d, bundle_id="shell_python_chain_fail_timeout_v1"),
    "streaming_peak_demo": lambda s, d: _submit(s, d, bundle_id="streaming_peak_demo_v1"),
    "pause_message_resume": _pause_message_resume,
    "cancelled": _cancelled,
}


async def record(target: Path = GOLDEN) -> None:
    """Run every scenario on a scratch SQLite database and write one JSON file per scenario."""
    scratch = Path(tempfile.mkdtemp())
    url = f"sqlite+aiosqlite:///{scratch / 'golden.db'}"
    settings = Settings(database_url=url, node_name="golden-node", poll_interval_ms=50, bundles_dir=EXAMPLES,
                        temp_dir=scratch / "staging")
    db = Database(url)
    await upgrade_to_head(db.writer)
    service = Service(db)
    node = Node(settings, db, service)
    await node.start()
    try:
        for name, scenario in SCENARIOS.items():
            job_id = await scenario(service, db)
            events = await _until(db, job_id, lambda es: es[-1].type in TERMINAL)
            projection = fold(events)
            assert projection is not None
            document = {
                "scenario": name,
                "events": [e.to_api() for e in events],
                "projection": {
                    "job": job_to_row(projection.job),
                    "agents": [agent_to_row(a) for a in projection.agents.values()],
                },
            }
            (target / f"{name}.json").write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n")
            print(f"{name}: {len(events)} events")
    finally:
        await node.stop()
        await db.dispose()


async def record_crossing(target: Path = GOLDEN) -> None:
    """The history that crosses v1.0 -> v1.1 (SPEC C.1.3): pause_message_resume's v1.0 events up to
    the pause in a revision-0001 database, the upgrade, then a message, resume and cancel."""
    from tests.store.test_hash_upgrade import (
        api_records,
        continue_after_upgrade,
        seed_v1_database,
        v1_history,
    )

    scratch = Path(tempfile.mkdtemp())
    url = f"sqlite+aiosqlite:///{scratch / 'crossing.db'}"
    history = v1_history()
    job_id = history[0]["job_id"]
    await seed_v1_database(url, history)
    db = Database(url)
    try:
        await continue_after_upgrade(db, job_id)
        records = await api_records(db, job_id)
        events = await _events(db, job_id)
    finally:
        await db.dispose()
    projection = fold(events)
    assert projection is not None
    document = {
        "scenario": "crossing_pyjson_to_jcs",
        "events": records,
        "projection": {"job": job_to_row(projection.job), "agents": [agent_to_row(a) for a in projection.agents.values()]},
    }
    (target / "crossing_pyjson_to_jcs.json").write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n")
    print(f"crossing_pyjson_to_jcs: {len(records)} events")


if __name__ == "__main__":
    import sys

    asyncio.run(record_crossing() if sys.argv[1:] == ["--crossing"] else record())
