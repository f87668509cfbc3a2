"""Readiness (SPEC §2.4, C.5.10): does the database answer, is it migrated, is this node's row alive."""

from __future__ import annotations

import asyncio
import functools
import os

from sqlalchemy import and_, select
from sqlalchemy.exc import DBAPIError

from app.store.database import Database
from app.store.migrate import current_revision, head_revision
from app.store.tables import nodes

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
    await db.ping()
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


async def node_alive(db: Database, name: str, incarnation: str, *, now_ms: int, ttl_ms: int) -> bool:
    """Whether `incarnation` holds the node row `name`, alive, with a heartbeat within the TTL."""
    query = select(nodes.c.last_heartbeat_ms).where(
        and_(nodes.c.name == name, nodes.c.incarnation == incarnation, nodes.c.status == "alive")
    )
    try:
        async with asyncio.timeout(READY_TIMEOUT_SECONDS), db.read() as conn:
            heartbeat = (await conn.execute(query)).scalar()
    except Exception:
        return False
    return heartbeat is not None and heartbeat >= now_ms - ttl_ms
