"""approvals: what an approval step asks and who may not decide it; api_keys.slack_user_id
(issue 14)

The `approvals` table existed without a writer; the recorder now projects approval steps into
it (rb_store.approval_rows), and the API lists and decides them by `approval_id`. An identity
may carry the Slack user id whose Approve / Reject clicks decide as it.

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
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("slack_user_id", sa.String(length=32), nullable=True))
    op.create_index("ix_api_keys_slack_user_id", "api_keys", ["slack_user_id"])


def downgrade() -> None:
    op.drop_index("ix_api_keys_slack_user_id", table_name="api_keys")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("slack_user_id")
    op.drop_index("ix_approvals_status", table_name="approvals")
    op.drop_index("ix_approvals_approval_id", table_name="approvals")
    with op.batch_alter_table("approvals") as batch:
        for name, _ in reversed(COLUMNS):
            batch.drop_column(name)
