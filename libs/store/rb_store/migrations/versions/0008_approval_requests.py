"""approvals: what an approval step asks and who may not decide it (issue 14)

The `approvals` table existed without a writer; the recorder now projects approval steps into
it (rb_store.approval_rows), and the API lists and decides them by `approval_id`.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

COLUMNS = (
    ("approval_id", sa.String(length=200)),
    ("runbook_id", sa.String(length=100)),
    ("prompt", sa.Text()),
    ("min_approvals", sa.Integer()),
    ("require_comment", sa.Boolean()),
    ("timeout_at", sa.DateTime(timezone=True)),
    ("timeout_action", sa.String(length=16)),
    ("requested_by", sa.String(length=200)),
)


def upgrade() -> None:
    with op.batch_alter_table("approvals") as batch:
        for name, type_ in COLUMNS:
            batch.add_column(sa.Column(name, type_, nullable=True))
    op.create_index("ix_approvals_approval_id", "approvals", ["approval_id"], unique=True)
    op.create_index("ix_approvals_status", "approvals", ["status"])


def downgrade() -> None:
    op.drop_index("ix_approvals_status", table_name="approvals")
    op.drop_index("ix_approvals_approval_id", table_name="approvals")
    with op.batch_alter_table("approvals") as batch:
        for name, _ in reversed(COLUMNS):
            batch.drop_column(name)
