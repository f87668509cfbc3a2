"""Exactly once: command ids on events, and jobs ordered by the position of their submission.

`events.command_id` names the command whose first event the row is (a node's step, an admission,
an HTTP control with an Idempotency-Key); the unique index on (stream_id, command_id) lets one
command append its events to a stream once. `events.request_sha256` is the digest of the HTTP
request behind a keyed control (SPEC C.5.9). Neither is part of the event record or its hash.

`jobs.submitted_position` is the position of the job's `job_submitted` event: admission and
claims take jobs in that order (SPEC §3.2), which millisecond timestamps could not give.

Revision ID: 0004_command_ids
Revises: 0003_hash_alg
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_command_ids"
down_revision = "0003_hash_alg"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("command_id", sa.String(300), nullable=True))
        batch.add_column(sa.Column("request_sha256", sa.String(64), nullable=True))
    op.create_index(
        "uq_events_stream_command",
        "events",
        ["stream_id", "command_id"],
        unique=True,
        postgresql_where=sa.text("command_id IS NOT NULL"),
        sqlite_where=sa.text("command_id IS NOT NULL"),
    )
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("submitted_position", sa.BigInteger(), nullable=True))
    op.execute(
        "UPDATE jobs SET submitted_position = "
        "(SELECT e.position FROM events e WHERE e.stream_id = jobs.job_id AND e.sequence = 1)"
    )
    op.create_index("ix_jobs_status_submitted", "jobs", ["status", "submitted_position", "job_id"])


def downgrade() -> None:
    op.drop_index("ix_jobs_status_submitted", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("submitted_position")
    op.drop_index("uq_events_stream_command", table_name="events")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("request_sha256")
        batch.drop_column("command_id")
