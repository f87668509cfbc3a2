"""Initial schema: event log, projections, operational tables, immutability triggers.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("position", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("stream_id", sa.String(300), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("type", sa.String(200), nullable=False),
        sa.Column("timestamp", sa.String(24), nullable=False),
        sa.Column("job_id", sa.String(200), nullable=True),
        sa.Column("agent_id", sa.Text(), nullable=True),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("schema_version", sa.Integer(), server_default="1", nullable=False),
        sa.PrimaryKeyConstraint("position"),
        sa.UniqueConstraint("stream_id", "sequence", name="uq_events_stream_sequence"),
        sa.UniqueConstraint("event_id", name="uq_events_event_id"),
    )
    op.create_table(
        "event_positions",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("last_position", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.execute("INSERT INTO event_positions (id, last_position) VALUES (1, 0)")
    op.create_table(
        "jobs",
        sa.Column("job_id", sa.String(200), nullable=False),
        sa.Column("graph_id", sa.String(128), nullable=False),
        sa.Column("job_name", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("status_reason", sa.Text(), nullable=True),
        sa.Column("daemon", sa.Boolean(), nullable=False),
        sa.Column("submitted_at", sa.String(24), nullable=False),
        sa.Column("updated_at", sa.String(24), nullable=False),
        sa.Column("root_agent_ids", sa.Text(), nullable=False),
        sa.Column("placement_policy", sa.Text(), nullable=False),
        sa.Column("recovery_policy", sa.Text(), nullable=False),
        sa.Column("max_agent_restart_attempts", sa.Integer(), nullable=True),
        sa.Column("result", sa.Text(), nullable=True),
        sa.Column("node", sa.Text(), nullable=True),
        sa.Column("nodes", sa.Text(), nullable=False),
        sa.Column("recovery_count", sa.Integer(), nullable=False),
        sa.Column("counted_recoveries", sa.Integer(), nullable=False),
        sa.Column("last_sequence", sa.Integer(), nullable=False),
        sa.Column("last_hash", sa.String(64), nullable=False),
        sa.Column("last_event", sa.Text(), nullable=True),
        sa.Column("last_timestamp", sa.String(24), nullable=False),
        sa.Column("manifest_ref", sa.Text(), nullable=False),
        sa.Column("bundle", sa.Text(), nullable=True),
        sa.Column("idempotency_key", sa.String(255), nullable=True),
        sa.Column("request_sha256", sa.String(64), nullable=True),
        sa.Column("executor_count", sa.Integer(), nullable=False),
        sa.Column("sandbox_names", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("job_id"),
    )
    op.create_index("ix_jobs_updated", "jobs", ["updated_at", "job_id"])
    op.create_index("ix_jobs_status_updated", "jobs", ["status", "updated_at", "job_id"])
    op.create_index("ix_jobs_graph_updated", "jobs", ["graph_id", "updated_at", "job_id"])
    op.create_index("uq_jobs_idempotency_key", "jobs", ["idempotency_key"], unique=True)
    op.create_table(
        "agents",
        sa.Column("job_id", sa.String(200), nullable=False),
        sa.Column("agent_id", sa.String(128), nullable=False),
        sa.Column("ordinal", sa.Integer(), nullable=False),
        sa.Column("agent_type", sa.String(32), nullable=False),
        sa.Column("template", sa.String(32), nullable=False),
        sa.Column("role", sa.Text(), nullable=True),
        sa.Column("processed_messages", sa.Integer(), nullable=False),
        sa.Column("mailbox_depth", sa.Integer(), nullable=False),
        sa.Column("inflight_message_id", sa.String(64), nullable=True),
        sa.Column("state", sa.Text(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("runs", sa.Integer(), nullable=False),
        sa.Column("sandbox_name", sa.Text(), nullable=True),
        sa.Column("sandbox_exit_code", sa.Integer(), nullable=True),
        sa.Column("sandbox_pool", sa.Text(), nullable=True),
        sa.Column("sandbox_at", sa.String(24), nullable=True),
        sa.Column("lease_id", sa.String(64), nullable=True),
        sa.Column("lease_pool", sa.Text(), nullable=True),
        sa.Column("lease_slots", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("job_id", "agent_id"),
    )
    op.create_table(
        "bundles",
        sa.Column("bundle_id", sa.String(128), nullable=False),
        sa.Column("view", sa.Text(), nullable=False),
        sa.Column("last_sequence", sa.Integer(), nullable=False),
        sa.Column("last_hash", sa.String(64), nullable=False),
        sa.Column("last_timestamp", sa.String(24), nullable=False),
        sa.PrimaryKeyConstraint("bundle_id"),
    )
    op.create_table(
        "nodes",
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("incarnation", sa.String(36), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("started_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("last_heartbeat_ms", sa.BigInteger(), nullable=False),
        sa.Column("status_changed_ms", sa.BigInteger(), nullable=False),
        sa.Column("api_enabled", sa.Boolean(), nullable=False),
        sa.Column("runtime_enabled", sa.Boolean(), nullable=False),
        sa.Column("executor_pools", sa.Text(), nullable=False),
        sa.Column("hardware", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "job_leases",
        sa.Column("job_id", sa.String(200), nullable=False),
        sa.Column("node", sa.String(255), nullable=False),
        sa.Column("incarnation", sa.String(36), nullable=False),
        sa.Column("token", sa.BigInteger(), nullable=False),
        sa.Column("expires_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("released", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("job_id"),
    )
    op.create_index("ix_job_leases_incarnation", "job_leases", ["incarnation"])
    op.create_table(
        "executor_leases",
        sa.Column("lease_id", sa.String(64), nullable=False),
        sa.Column("node", sa.String(255), nullable=False),
        sa.Column("incarnation", sa.String(36), nullable=False),
        sa.Column("job_id", sa.String(200), nullable=False),
        sa.Column("agent_id", sa.String(128), nullable=False),
        sa.Column("pool", sa.Text(), nullable=False),
        sa.Column("slots", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(8), nullable=False),
        sa.Column("requested_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("lease_id"),
    )
    op.create_index("ix_executor_leases_node", "executor_leases", ["node"])
    op.create_index("ix_executor_leases_job", "executor_leases", ["job_id"])
    _immutability_triggers()


def _immutability_triggers() -> None:
    # DESIGN §2 invariant 6: no UPDATE of an event row, ever (DELETE only through cleanup).
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION mn_events_immutable() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'events are immutable'; END $$"
        )
        op.execute(
            "CREATE TRIGGER events_no_update BEFORE UPDATE ON events "
            "FOR EACH ROW EXECUTE FUNCTION mn_events_immutable()"
        )
    else:
        op.execute(
            "CREATE TRIGGER events_no_update BEFORE UPDATE ON events "
            "BEGIN SELECT RAISE(ABORT, 'events are immutable'); END"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS events_no_update ON events")
        op.execute("DROP FUNCTION IF EXISTS mn_events_immutable()")
    else:
        op.execute("DROP TRIGGER IF EXISTS events_no_update")
    for table in ("executor_leases", "job_leases", "nodes", "bundles", "agents", "jobs", "event_positions", "events"):
        op.drop_table(table)
