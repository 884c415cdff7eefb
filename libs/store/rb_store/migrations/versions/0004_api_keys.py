"""api_keys, and the team of each runbook (team-scoped runbooks)

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=12), nullable=False),
        sa.Column("roles", sa.JSON(), nullable=False),
        sa.Column("teams", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_by", sa.String(length=200), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key_hash"),
    )
    with op.batch_alter_table("runbooks") as batch:
        batch.add_column(sa.Column("team", sa.String(length=100), nullable=True))
        batch.create_index("ix_runbooks_team", ["team"])
    # Runbooks registered before: their team from the current revision's definition.
    bind = op.get_bind()
    runbooks = sa.table("runbooks", sa.column("id"), sa.column("current_revision"), sa.column("team"))
    versions = sa.table(
        "runbook_versions", sa.column("runbook_id"), sa.column("revision"), sa.column("definition", sa.JSON)
    )
    rows = bind.execute(
        sa.select(runbooks.c.id, versions.c.definition).join(
            versions,
            sa.and_(
                versions.c.runbook_id == runbooks.c.id,
                versions.c.revision == runbooks.c.current_revision,
            ),
        )
    ).all()
    for runbook_id, definition in rows:
        team = (definition or {}).get("team") if isinstance(definition, dict) else None
        if isinstance(team, str) and team:
            bind.execute(sa.update(runbooks).where(runbooks.c.id == runbook_id).values(team=team))


def downgrade() -> None:
    with op.batch_alter_table("runbooks") as batch:
        batch.drop_index("ix_runbooks_team")
        batch.drop_column("team")
    op.drop_table("api_keys")
