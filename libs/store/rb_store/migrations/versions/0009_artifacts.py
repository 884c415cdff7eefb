"""artifacts, artifact_refs: content-addressed blobs on PostgreSQL large objects (issue 16)

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "artifacts",
        sa.Column("digest", sa.String(length=71), primary_key=True),
        sa.Column("oid", sa.BigInteger(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "artifact_refs",
        sa.Column("digest", sa.String(length=71), primary_key=True),
        sa.Column("execution_id", sa.String(length=64), primary_key=True),
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("SELECT lo_unlink(oid::oid) FROM artifacts")
    op.drop_table("artifact_refs")
    op.drop_table("artifacts")
