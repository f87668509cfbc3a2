"""Uploaded bundle archives (SPEC C.2.2, C.5.2): content-addressed, insert-only.

Revision ID: 0002_bundle_archives
Revises: 0001
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_bundle_archives"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "bundle_archives",
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("bundle_id", sa.String(128), nullable=False),
        sa.Column("manifest", sa.Text(), nullable=False),
        sa.Column("payload_files", sa.Text(), nullable=False),
        sa.Column("expanded_bytes", sa.BigInteger(), nullable=False),
        sa.Column("archive", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.String(24), nullable=False),
        sa.PrimaryKeyConstraint("fingerprint"),
    )
    # A stored version is what its fingerprint says, for good: no UPDATE, ever.
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION mn_bundle_archives_immutable() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'bundle archives are immutable'; END $$"
        )
        op.execute(
            "CREATE TRIGGER bundle_archives_no_update BEFORE UPDATE ON bundle_archives "
            "FOR EACH ROW EXECUTE FUNCTION mn_bundle_archives_immutable()"
        )
    else:
        op.execute(
            "CREATE TRIGGER bundle_archives_no_update BEFORE UPDATE ON bundle_archives "
            "BEGIN SELECT RAISE(ABORT, 'bundle archives are immutable'); END"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS bundle_archives_no_update ON bundle_archives")
        op.execute("DROP FUNCTION IF EXISTS mn_bundle_archives_immutable()")
    else:
        op.execute("DROP TRIGGER IF EXISTS bundle_archives_no_update")
    op.drop_table("bundle_archives")
