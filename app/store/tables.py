"""The logical schema (DESIGN §3), shared by SQLite and Postgres; created only by migrations."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    any_,
    bindparam,
    text,
)

from app.store.database import Prepared

metadata = MetaData()

# The append-only log. `payload` is canonical JSON text: the bytes hashed are the bytes stored.
events = Table(
    "events",
    metadata,
    Column("position", BigInteger, primary_key=True, autoincrement=False),
    Column("stream_id", String(300), nullable=False),
    Column("sequence", Integer, nullable=False),
    Column("event_id", String(36), nullable=False),
    Column("type", String(200), nullable=False),
    Column("timestamp", String(24), nullable=False),
    Column("job_id", String(200), nullable=True),
    Column("agent_id", Text, nullable=True),
    Column("payload", Text, nullable=False),
    Column("hash", String(64), nullable=False),
    Column("schema_version", Integer, nullable=False, server_default="1"),
    # SPEC C.1.3: rows written before v1.1 keep the default; v1.1 writes "jcs-sha256" explicitly.
    Column("hash_alg", String(16), nullable=False, server_default="pyjson-sha256"),
    # Write-path metadata, not part of the event record or its hash (see event_store.insert_sealed):
    # the id of the command whose first event this is, and the digest of a keyed HTTP request.
    Column("command_id", String(300), nullable=True),
    Column("request_sha256", String(64), nullable=True),
    UniqueConstraint("stream_id", "sequence", name="uq_events_stream_sequence"),
    UniqueConstraint("event_id", name="uq_events_event_id"),
    # A command appends its events to a stream at most once (exactly once: README "How data flows").
    Index(
        "uq_events_stream_command",
        "stream_id",
        "command_id",
        unique=True,
        postgresql_where=text("command_id IS NOT NULL"),
        sqlite_where=text("command_id IS NOT NULL"),
    ),
)

# One row: the last position handed out. Updated as the last statement of every append, so the
# row lock orders commits (DESIGN §2 invariant 4; see event_store.append).
event_positions = Table(
    "event_positions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("last_position", BigInteger, nullable=False),
)

jobs = Table(
    "jobs",
    metadata,
    Column("job_id", String(200), primary_key=True),
    Column("graph_id", String(128), nullable=False),
    Column("job_name", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("status_reason", Text, nullable=True),
    Column("daemon", Boolean, nullable=False),
    Column("submitted_at", String(24), nullable=False),
    Column("updated_at", String(24), nullable=False),
    Column("root_agent_ids", Text, nullable=False),
    Column("placement_policy", Text, nullable=False),
    Column("recovery_policy", Text, nullable=False),
    Column("max_agent_restart_attempts", Integer, nullable=True),
    Column("result", Text, nullable=True),
    Column("node", Text, nullable=True),
    Column("nodes", Text, nullable=False),
    Column("recovery_count", Integer, nullable=False),
    Column("counted_recoveries", Integer, nullable=False),
    Column("last_sequence", Integer, nullable=False),
    Column("last_hash", String(64), nullable=False),
    Column("last_event", Text, nullable=True),
    Column("last_timestamp", String(24), nullable=False),
    Column("manifest_ref", Text, nullable=False),
    Column("bundle", Text, nullable=True),
    Column("idempotency_key", String(255), nullable=True),
    Column("request_sha256", String(64), nullable=True),
    Column("executor_count", Integer, nullable=False),
    Column("sandbox_names", Text, nullable=False),
    # The position of the job's `job_submitted` event: admission and claim order (SPEC §3.2).
    # Set by the write path once positions are taken, and by rebuild from the log.
    Column("submitted_position", BigInteger, nullable=True),
    Index("ix_jobs_updated", "updated_at", "job_id"),
    Index("ix_jobs_status_updated", "status", "updated_at", "job_id"),
    Index("ix_jobs_graph_updated", "graph_id", "updated_at", "job_id"),
    Index("uq_jobs_idempotency_key", "idempotency_key", unique=True),
    Index("ix_jobs_status_submitted", "status", "submitted_position", "job_id"),
)

agents = Table(
    "agents",
    metadata,
    Column("job_id", String(200), primary_key=True),
    Column("agent_id", String(128), primary_key=True),
    Column("ordinal", Integer, nullable=False),
    Column("agent_type", String(32), nullable=False),
    Column("template", String(32), nullable=False),
    Column("role", Text, nullable=True),
    Column("processed_messages", Integer, nullable=False),
    Column("mailbox_depth", Integer, nullable=False),
    Column("inflight_message_id", String(64), nullable=True),
    Column("state", Text, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("runs", Integer, nullable=False),
    Column("sandbox_name", Text, nullable=True),
    Column("sandbox_exit_code", Integer, nullable=True),
    Column("sandbox_pool", Text, nullable=True),
    Column("sandbox_at", String(24), nullable=True),
    Column("lease_id", String(64), nullable=True),
    Column("lease_pool", Text, nullable=True),
    Column("lease_slots", Integer, nullable=True),
)

bundles = Table(
    "bundles",
    metadata,
    Column("bundle_id", String(128), primary_key=True),
    Column("view", Text, nullable=False),
    Column("last_sequence", Integer, nullable=False),
    Column("last_hash", String(64), nullable=False),
    Column("last_timestamp", String(24), nullable=False),
)

# Uploaded bundle versions (SPEC C.2.2, C.5.2), content-addressed by their §9.3 fingerprint: one row
# per distinct content, inserted with the bundle event that first names it, never updated (a
# trigger refuses it), not a projection (rebuild leaves it alone) and not deleted by cleanup.
bundle_archives = Table(
    "bundle_archives",
    metadata,
    Column("fingerprint", String(64), primary_key=True),
    Column("bundle_id", String(128), nullable=False),
    Column("manifest", Text, nullable=False),
    Column("payload_files", Text, nullable=False),
    Column("expanded_bytes", BigInteger, nullable=False),
    Column("archive", LargeBinary, nullable=False),
    Column("created_at", String(24), nullable=False),
)

# Operational tables: coordination state, never rebuilt from events. Times are epoch ms.
nodes = Table(
    "nodes",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("incarnation", String(36), nullable=False),
    Column("status", String(16), nullable=False),
    Column("started_at_ms", BigInteger, nullable=False),
    Column("last_heartbeat_ms", BigInteger, nullable=False),
    Column("status_changed_ms", BigInteger, nullable=False),
    Column("api_enabled", Boolean, nullable=False),
    Column("runtime_enabled", Boolean, nullable=False),
    Column("executor_pools", Text, nullable=False),
    Column("hardware", Text, nullable=False),
)

job_leases = Table(
    "job_leases",
    metadata,
    Column("job_id", String(200), primary_key=True),
    Column("node", String(255), nullable=False),
    Column("incarnation", String(36), nullable=False),
    Column("token", BigInteger, nullable=False),
    Column("expires_at_ms", BigInteger, nullable=False),
    Column("released", Boolean, nullable=False),
    Index("ix_job_leases_incarnation", "incarnation"),
)

executor_leases = Table(
    "executor_leases",
    metadata,
    Column("lease_id", String(64), primary_key=True),
    Column("node", String(255), nullable=False),
    Column("incarnation", String(36), nullable=False),
    Column("job_id", String(200), nullable=False),
    Column("agent_id", String(128), nullable=False),
    Column("pool", Text, nullable=False),
    Column("slots", Integer, nullable=False),
    Column("state", String(8), nullable=False),
    Column("requested_at_ms", BigInteger, nullable=False),
    Index("ix_executor_leases_node", "node"),
    Index("ix_executor_leases_job", "job_id"),
)


def in_list(column: Any, values: Collection[Any]) -> Any:
    """`column IN (values)`, with the list padded to a power-of-two length.

    Each length of an IN list is a different SQL text, and every pooled connection prepares and
    caches a statement per text (asyncpg). Lists whose length follows the number of jobs or
    agents in play kept a worker preparing new statements for as long as it ran; padding
    (repeating the last value, which changes no result) leaves a handful of lengths per query.
    (The soak's memory growth had another cause: see app/ops/memory.py.)
    """
    return column.in_(padded(values))


def padded(values: Collection[Any]) -> list[Any]:
    """The values of an IN list padded to a power-of-two length (see `in_list`), for an expanding bindparam."""
    items = list(values)
    if items:
        items.extend([items[-1]] * ((1 << (len(items) - 1).bit_length()) - len(items)))
    return items


def prepared(build: Callable[[str], Any]) -> Prepared:
    """A statement built once whose SQL differs by dialect (it has an `any_of`): `build(dialect)`."""
    return Prepared(build("postgresql"), sqlite=build("sqlite"))


def any_of(column: Any, name: str, dialect: str) -> Any:
    """`column IN (:name)` for a statement built once (bind the list with `id_list`).

    On Postgres it is `column = ANY(:name)` with the list as one array parameter: one SQL text
    and one prepared statement whatever the length, and no per-execution expansion of the
    statement. On SQLite an expanding parameter, its lengths kept few by `padded`.
    """
    if dialect == "postgresql":
        return column == any_(bindparam(name, type_=ARRAY(column.type)))
    return column.in_(bindparam(name, expanding=True))


def id_list(dialect: str, values: Collection[Any]) -> list[Any]:
    """The value bound to an `any_of` parameter."""
    return list(values) if dialect == "postgresql" else padded(values)
