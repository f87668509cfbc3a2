"""Health, readiness, system summary and nodes (SPEC §2.3–§2.6)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Response, get

from app.http.context import ApiDep
from app.http.schemas import NO_AUTHENTICATION, responses
from app.store import read_model
from app.store.health import readiness
from app.wire import Health, NodeList, SystemSummary, Unready


class SystemController(Controller):
    """Liveness, readiness, nodes and the system summary."""

    path = "/api/v1"
    tags = ["system"]

    @get(
        "/health",
        operation_id="getHealth",
        security=NO_AUTHENTICATION,
        responses=responses({200: (Health, "The process serves HTTP")}, authenticated=False),
    )
    async def health(self) -> dict[str, str]:
        """Always ok while the process serves HTTP; no database, no authentication."""
        return {"status": "ok"}

    @get(
        "/health/ready",
        operation_id="getReadiness",
        responses=responses(
            {
                200: (Health, "Database reachable and at the head migration"),
                503: (Unready, "Database unreachable or not migrated"),
            }
        ),
    )
    async def ready(self, api: ApiDep) -> Response[dict[str, str]]:
        """200 when `SELECT 1` answers within 2 s and the schema is at head; 503 otherwise."""
        status, body = await readiness(api.db)
        return Response(body, status_code=status)

    @get(
        "/system/summary",
        operation_id="getSystemSummary",
        responses=responses({200: (SystemSummary, "Nodes, recent jobs and counts")}),
    )
    async def summary(self, api: ApiDep) -> dict[str, Any]:
        """Nodes, the 100 most recently updated jobs, and job counts."""
        async with api.db.read() as conn:
            return await read_model.system_summary(conn, serving_node=api.node_name, now_ms=api.now_ms())

    @get(
        "/nodes",
        operation_id="listNodes",
        responses=responses({200: (NodeList, "Nodes sorted by name")}),
    )
    async def nodes(self, api: ApiDep) -> dict[str, Any]:
        """Alive nodes and nodes lost or stopped within the last hour."""
        async with api.db.read() as conn:
            return {
                "data": await read_model.list_nodes(conn, serving_node=api.node_name, now_ms=api.now_ms())
            }
