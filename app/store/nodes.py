"""The operational `nodes` table (SPEC §10): registration, heartbeat, lost and stopped nodes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain.canonical import canonical_json
from app.store.tables import executor_leases, nodes

DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class NodeRow:
    """What a node writes about itself at registration."""

    name: str
    incarnation: str
    started_at_ms: int
    api_enabled: bool
    runtime_enabled: bool
    executor_pools: dict[str, int]
    hardware: dict[str, Any]


async def upsert(conn: AsyncConnection, row: NodeRow) -> None:
    """Register a node, overwriting a previous incarnation with the same name."""
    values = {
        "incarnation": row.incarnation,
        "status": "alive",
        "started_at_ms": row.started_at_ms,
        "last_heartbeat_ms": row.started_at_ms,
        "status_changed_ms": row.started_at_ms,
        "api_enabled": row.api_enabled,
        "runtime_enabled": row.runtime_enabled,
        "executor_pools": canonical_json(row.executor_pools),
        "hardware": canonical_json(row.hardware),
    }
    result = await conn.execute(update(nodes).where(nodes.c.name == row.name).values(**values))
    if result.rowcount == 0:
        await conn.execute(insert(nodes).values(name=row.name, **values))
    await conn.execute(delete(executor_leases).where(executor_leases.c.node == row.name))


async def heartbeat(conn: AsyncConnection, name: str, incarnation: str, now_ms: int) -> bool:
    """Record a heartbeat; False when the row belongs to another incarnation or was marked lost.

    A node declared lost stays lost: exactly one `node_lost` per incarnation (SPEC §10.2).
    """
    result = await conn.execute(
        update(nodes)
        .where(and_(nodes.c.name == name, nodes.c.incarnation == incarnation, nodes.c.status == "alive"))
        .values(last_heartbeat_ms=now_ms)
    )
    return bool(result.rowcount)


async def expire(conn: AsyncConnection, now_ms: int, ttl_ms: int) -> list[dict[str, Any]]:
    """Mark alive nodes whose heartbeat is older than the TTL as lost; return them."""
    stale = (
        await conn.execute(
            select(nodes.c.name, nodes.c.incarnation, nodes.c.last_heartbeat_ms).where(
                and_(nodes.c.status == "alive", nodes.c.last_heartbeat_ms < now_ms - ttl_ms)
            )
        )
    ).all()
    lost: list[dict[str, Any]] = []
    for row in stale:
        # Conditional on the row still being alive with the same incarnation: exactly one
        # node_lost per incarnation even when several nodes run this tick at once.
        result = await conn.execute(
            update(nodes)
            .where(
                and_(
                    nodes.c.name == row.name,
                    nodes.c.incarnation == row.incarnation,
                    nodes.c.status == "alive",
                    nodes.c.last_heartbeat_ms == row.last_heartbeat_ms,
                )
            )
            .values(status="lost", status_changed_ms=now_ms)
        )
        if result.rowcount:
            await conn.execute(delete(executor_leases).where(executor_leases.c.node == row.name))
            lost.append({"node": row.name, "incarnation": row.incarnation, "last_heartbeat_ms": row.last_heartbeat_ms})
    await conn.execute(
        delete(nodes).where(and_(nodes.c.status != "alive", nodes.c.status_changed_ms < now_ms - DAY_MS))
    )
    return lost


async def mark_stopped(conn: AsyncConnection, name: str, incarnation: str, now_ms: int) -> bool:
    """Set a node's own row to stopped; False if the row belongs to another incarnation."""
    result = await conn.execute(
        update(nodes)
        .where(and_(nodes.c.name == name, nodes.c.incarnation == incarnation))
        .values(status="stopped", status_changed_ms=now_ms)
    )
    await conn.execute(
        delete(executor_leases).where(
            and_(executor_leases.c.node == name, executor_leases.c.incarnation == incarnation)
        )
    )
    return bool(result.rowcount)


async def needs_maintenance(conn: AsyncConnection, now_ms: int, ttl_ms: int) -> bool:
    """True when some node is due to be marked lost or deleted (read-only check)."""
    from sqlalchemy import or_

    row = (
        await conn.execute(
            select(nodes.c.name)
            .where(
                or_(
                    and_(nodes.c.status == "alive", nodes.c.last_heartbeat_ms < now_ms - ttl_ms),
                    and_(nodes.c.status != "alive", nodes.c.status_changed_ms < now_ms - DAY_MS),
                )
            )
            .limit(1)
        )
    ).first()
    return row is not None
