"""The bundle projection row (`bundles`): its shape, and its load and save by the write path.

One row per bundle stream: the folded view (canonical JSON) and the stream's head. The write
path (`app/service/bundle_commands.py`) loads it locked and saves it after each command; the rebuild
(`store/rebuild.py`) builds the same row from the whole stream.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain import events as ev
from app.domain.canonical import canonical_json
from app.domain.events import Event
from app.store.event_store import ConcurrencyConflict, StreamHead
from app.store.tables import bundles


@dataclass(frozen=True)
class BundleRow:
    """A bundle's view and the head of its stream, as the write path loaded them."""

    view: dict[str, Any]
    head: StreamHead


def row_of(bundle_id: str, view: dict[str, Any], last: Event) -> dict[str, Any]:
    """The `bundles` row of `view`, folded up to its stream's `last` event."""
    return {
        "bundle_id": bundle_id,
        "view": canonical_json(view),
        "last_sequence": last.sequence,
        "last_hash": last.hash,
        "last_timestamp": last.timestamp,
    }


async def load_locked(conn: AsyncConnection, bundle_id: str) -> BundleRow | None:
    """The bundle's row, None if unregistered; on Postgres its row lock is held until the transaction ends."""
    query = select(bundles).where(bundles.c.bundle_id == bundle_id)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    row = (await conn.execute(query)).first()
    if row is None:
        return None
    return BundleRow(json.loads(row.view), StreamHead(row.last_sequence, row.last_hash, row.last_timestamp))


async def save(
    conn: AsyncConnection, bundle_id: str, view: dict[str, Any], last: Event, *, new: bool
) -> None:
    """Insert (`new`) or update the row; ConcurrencyConflict if another writer registered the bundle first."""
    values = row_of(bundle_id, view, last)
    try:
        if new:
            await conn.execute(insert(bundles).values(**values))
        else:
            del values["bundle_id"]
            await conn.execute(update(bundles).where(bundles.c.bundle_id == bundle_id).values(**values))
    except IntegrityError as exc:
        raise ConcurrencyConflict(ev.bundle_stream(bundle_id)) from exc
