"""Uploaded bundle archives (SPEC C.2.2, C.5.2): insert-only rows keyed by fingerprint."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain.canonical import canonical_json
from app.domain.events import TERMINAL_STATUSES
from app.store.tables import bundle_archives, bundles, jobs


@dataclass(frozen=True)
class StoredVersion:
    """An uploaded version as submissions need it: no archive bytes."""

    fingerprint: str
    bundle_id: str
    manifest: dict[str, Any]
    payload_files: list[str]


@dataclass(frozen=True)
class StoredArchive:
    """The archive bytes of a version and how many bytes it expands to."""

    archive: bytes
    expanded_bytes: int


async def insert(
    conn: AsyncConnection,
    *,
    fingerprint: str,
    bundle_id: str,
    manifest: dict[str, Any],
    payload_files: list[str],
    archive: bytes,
    expanded_bytes: int,
    created_at: str,
) -> None:
    """Store a version unless its fingerprint is stored already (then nothing is written)."""
    dialect_insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    statement = dialect_insert(bundle_archives).values(
        fingerprint=fingerprint,
        bundle_id=bundle_id,
        manifest=canonical_json(manifest),
        payload_files=canonical_json(payload_files),
        archive=archive,
        expanded_bytes=expanded_bytes,
        created_at=created_at,
    )
    await conn.execute(statement.on_conflict_do_nothing(index_elements=["fingerprint"]))


async def version(conn: AsyncConnection, fingerprint: str) -> StoredVersion | None:
    """The stored version with this fingerprint, without its bytes; None if none is stored."""
    columns = (bundle_archives.c.bundle_id, bundle_archives.c.manifest, bundle_archives.c.payload_files)
    row = (await conn.execute(select(*columns).where(bundle_archives.c.fingerprint == fingerprint))).first()
    if row is None:
        return None
    return StoredVersion(fingerprint, row.bundle_id, json.loads(row.manifest), json.loads(row.payload_files))


async def archive(conn: AsyncConnection, fingerprint: str) -> StoredArchive | None:
    """The archive bytes of a stored version; None if none is stored."""
    columns = (bundle_archives.c.archive, bundle_archives.c.expanded_bytes)
    row = (await conn.execute(select(*columns).where(bundle_archives.c.fingerprint == fingerprint))).first()
    return None if row is None else StoredArchive(bytes(row.archive), int(row.expanded_bytes))


async def needed_paths(conn: AsyncConnection) -> set[str]:
    """The bundle paths still needed on disk: every bundle's current version and every unfinished job's."""
    views = await conn.execute(select(bundles.c.view))
    unfinished = await conn.execute(
        select(jobs.c.manifest_ref).where(
            jobs.c.status.not_in(sorted(TERMINAL_STATUSES)), jobs.c.bundle.is_not(None)
        )
    )
    current = {str(json.loads(row[0])["path"]) for row in views}
    return current | {str(json.loads(row[0])["job_path"]) for row in unfinished}
