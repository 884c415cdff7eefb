"""schedule_fires and schedule_misses: cron catch-up across scheduler restarts (issue 13)

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "schedule_fires",
        sa.Column("runbook_id", sa.String(length=100), nullable=False),
        sa.Column("trigger_index", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("last_fire_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("runbook_id", "trigger_index"),
    )
    op.create_table(
        "schedule_misses",
        sa.Column("runbook_id", sa.String(length=100), nullable=False),
        sa.Column("trigger_index", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("fire_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("runbook_id", "trigger_index", "fire_time"),
    )


def downgrade() -> None:
    op.drop_table("schedule_misses")
    op.drop_table("schedule_fires")
