"""Health, readiness, system summary and nodes (SPEC §2.3–§2.6)."""

from __future__ import annotations

import asyncio
import functools
import os
from typing import Any

from litestar import Controller, Response, get
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from app.http.context import ApiDep
from app.http.schemas import NO_AUTHENTICATION, Health, NodeList, SystemSummary, Unready, responses
from app.store import read_model
from app.store.database import Database
from app.store.migrate import current_revision, head_revision

READY_TIMEOUT_SECONDS = 2.0

_head_revision = functools.cache(head_revision)


def _detail(exc: BaseException) -> str:
    """A description of a connection failure that never names a host, a user or a password."""
    if isinstance(exc, TimeoutError):
        return f"no answer within {READY_TIMEOUT_SECONDS:g} s"
    root: BaseException = exc
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        root = exc.orig
    if isinstance(root, OSError) and root.errno:
        return f"{type(root).__name__}: {os.strerror(root.errno)}"
    return type(root).__name__


async def _probe(db: Database) -> str | None:
    """`SELECT 1`, then the schema revision; returns the revision."""
    async with db.read() as conn:
        await conn.execute(text("SELECT 1"))
    return await current_revision(db.reader)


async def readiness(db: Database) -> tuple[int, dict[str, str]]:
    """The §2.4 readiness answer: status code and body."""
    try:
        async with asyncio.timeout(READY_TIMEOUT_SECONDS):
            current = await _probe(db)
    except Exception as exc:  # every failure to answer is "unavailable", with a safe detail
        return 503, {"status": "unavailable", "error": f"database unavailable: {_detail(exc)}"}
    head = await asyncio.to_thread(_head_revision)
    if current != head:
        message = (
            f"database schema is not at the latest migration (current {current or 'none'}, expected {head})"
        )
        return 503, {"status": "unavailable", "error": message}
    return 200, {"status": "ready"}


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
