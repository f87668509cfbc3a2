"""Events carry the algorithm of their hash (SPEC C.1.3).

Rows written before v1.1 were hashed over Python's json.dumps text (Appendix B.2): the column
is added with that as its server default, so no event row is updated (the immutability trigger
stays in force). v1.1 writes "jcs-sha256" explicitly on every new row.

Revision ID: 0003_hash_alg
Revises: 0002_bundle_archives
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_hash_alg"
down_revision = "0002_bundle_archives"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "events", sa.Column("hash_alg", sa.String(16), server_default="pyjson-sha256", nullable=False)
    )


def downgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.drop_column("hash_alg")
