"""Node lifecycle writes (SPEC §3.3): the operational `nodes` row and its `system` audit event, in one transaction."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from app.domain import events as ev
from app.domain.canonical import format_ms
from app.domain.events import NewEvent
from app.store import nodes as nodes_store
from app.store.database import Connection
from app.store.nodes import NodeRow

if TYPE_CHECKING:
    from app.service.facade import Service


class NodeRegistry:
    """Node lifecycle writes: the operational row and its `system` audit event in one transaction."""

    def __init__(self, service: Service) -> None:
        self.service = service

    async def register(self, row: NodeRow, payload: dict[str, Any]) -> None:
        """Upsert the node row and append `node_registered`."""
        await self._with_event(lambda conn: nodes_store.upsert(conn, row), ev.NODE_REGISTERED, payload)

    async def stopped(self, name: str, incarnation: str) -> None:
        """Mark the node stopped and append `node_stopped` (not if a newer incarnation owns the name)."""
        now = self.service.clock()
        payload = {"node": name, "incarnation": incarnation}
        await self._with_event(
            lambda conn: nodes_store.mark_stopped(conn, name, incarnation, now), ev.NODE_STOPPED, payload
        )

    async def expire(self, detected_by: str, ttl_ms: int) -> list[str]:
        """Mark nodes with an expired heartbeat lost, one `node_lost` each; return their names."""
        async with self.service.db.read() as conn:
            if not await nodes_store.needs_maintenance(conn, self.service.clock(), ttl_ms):
                return []

        async def expire_and_audit(conn: Connection) -> list[NewEvent]:
            lost = await nodes_store.expire(conn, self.service.clock(), ttl_ms)
            return [
                NewEvent(
                    ev.NODE_LOST,
                    {
                        "node": n["node"],
                        "incarnation": n["incarnation"],
                        "last_heartbeat_at": format_ms(n["last_heartbeat_ms"]),
                        "detected_by": detected_by,
                    },
                )
                for n in lost
            ]

        recorded = await self.service.append_with(ev.SYSTEM_STREAM, expire_and_audit)
        return [event.payload["node"] for event in recorded]

    async def _with_event(
        self, write: Callable[[Connection], Awaitable[Any]], type_: str, payload: dict[str, Any]
    ) -> None:

        async def write_and_audit(conn: Connection) -> list[NewEvent]:
            if await write(conn) is False:
                return []  # the row belongs to another incarnation: nothing of ours to record
            return [NewEvent(type_, payload)]

        await self.service.append_with(ev.SYSTEM_STREAM, write_and_audit)
