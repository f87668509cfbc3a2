"""The operations listener in-process (SPEC C.5.10): /livez, /readyz rules, /metrics, both databases."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from app.domain.events import ALL_STATUSES
from app.ops.listener import NodeIdentity, OpsApp
from app.service import Service
from app.store import nodes as nodes_store
from app.store.database import Database
from app.store.nodes import NodeRow
from tests.store.test_chains import manifest

INCARNATION = "00000000-0000-4000-8000-0000000000aa"


def _identity(service: Service) -> NodeIdentity:
    return NodeIdentity("ops-node", INCARNATION, 60_000, service.clock)


async def _register(db: Database, identity: NodeIdentity) -> None:
    row = NodeRow(identity.name, identity.incarnation, identity.clock(), True, True, {}, {})
    async with db.write() as conn:
        await nodes_store.upsert(conn, row)


async def test_readiness_needs_the_database_and_this_incarnations_alive_row(db: Database, service: Service) -> None:
    identity = _identity(service)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=OpsApp(db, identity)), base_url="http://ops") as ops:
        assert (await ops.get("/livez")).status_code == 200
        unregistered = await ops.get("/readyz")
        assert unregistered.status_code == 503
        assert "ops-node" in unregistered.json()["error"]
        await _register(db, identity)
        identity.registered = True
        assert (await ops.get("/readyz")).json() == {"status": "ready"}
        async with db.write() as conn:  # another incarnation took the name
            await nodes_store.upsert(conn, NodeRow("ops-node", "another", identity.clock(), True, True, {}, {}))
        assert (await ops.get("/readyz")).status_code == 503
        await _register(db, identity)
        assert (await ops.get("/readyz")).status_code == 200
        identity.shutting_down = True
        shutting = await ops.get("/readyz")
        assert shutting.status_code == 503 and "shutdown" in shutting.json()["error"]
        assert (await ops.get("/livez")).status_code == 200


async def test_metrics_render_jobs_by_status_from_the_projection(db: Database, service: Service) -> None:
    for _ in range(3):
        await service.submit(manifest=manifest(), bundle=None, idempotency_key=None, request_sha256="0" * 64)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=OpsApp(db, _identity(service))), base_url="http://ops") as ops:
        answer = await ops.get("/metrics")
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/plain")
        families = {f.name: f for f in text_string_to_metric_families(answer.text)}
        jobs = {s.labels["status"]: s.value for s in families["mirror_neuron_jobs"].samples}
        assert jobs == {status: (3.0 if status == "pending" else 0.0) for status in ALL_STATUSES}
        assert families["mirror_neuron_jobs_queued"].samples[0].value == 0
        assert (await ops.get("/nothing")).status_code == 404
        assert (await ops.post("/metrics")).status_code == 405
