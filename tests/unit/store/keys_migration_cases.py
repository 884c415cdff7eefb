"""Migration 0004 (api_keys, runbooks.team), run against SQLite (unit) and PostgreSQL
(integration): upgrade from the schema before it (a team-scoped runbook registered then gets its
team), keys work, downgrade and upgrade again."""

from __future__ import annotations

from datetime import UTC, datetime

from alembic import command
from sqlalchemy import JSON, DateTime, Engine, Integer, String, column, insert, inspect, select, table

from rb_store.db import alembic_config, migrate
from rb_store.keys import authenticate, create_key, revoke_key
from rb_store.tables import runbooks


def check_keys_migration(engine: Engine) -> None:
    config = alembic_config(engine)
    command.upgrade(config, "0003")
    assert "api_keys" not in inspect(engine).get_table_names()
    now = datetime(2026, 1, 2, tzinfo=UTC)
    # The tables as 0003 left them (no team column yet).
    old_runbooks = table(
        "runbooks",
        column("id", String),
        column("status", String),
        column("current_revision", Integer),
        column("created_at", DateTime(timezone=True)),
        column("updated_at", DateTime(timezone=True)),
    )
    versions = table(
        "runbook_versions",
        column("runbook_id", String),
        column("revision", Integer),
        column("version", String),
        column("definition", JSON),
        column("created_at", DateTime(timezone=True)),
    )
    with engine.begin() as conn:
        for rid, definition in (
            ("rb-scoped", {"id": "rb-scoped", "team": "payments"}),
            ("rb-open", {"id": "rb-open"}),
        ):
            conn.execute(
                insert(old_runbooks).values(
                    id=rid, status="DRAFT", current_revision=1, created_at=now, updated_at=now
                )
            )
            conn.execute(
                insert(versions).values(
                    runbook_id=rid, revision=1, version="1.0.0", definition=definition, created_at=now
                )
            )
    migrate(engine)
    assert "api_keys" in inspect(engine).get_table_names()
    assert "ix_runbooks_team" in {i["name"] for i in inspect(engine).get_indexes("runbooks")}
    with engine.connect() as conn:
        teams = dict(conn.execute(select(runbooks.c.id, runbooks.c.team)).all())
    assert teams == {"rb-scoped": "payments", "rb-open": None}

    stored, key = create_key(engine, name="ci", roles=["operator"], teams=["payments"], created_by="test")
    found = authenticate(engine, key)
    assert found is not None and found.identity().actor == "key:ci"
    assert found.identity().teams == frozenset({"payments"})
    revoke_key(engine, stored.id, revoked_by="test")
    assert authenticate(engine, key) is None

    command.downgrade(config, "0003")
    assert "api_keys" not in inspect(engine).get_table_names()
    assert "team" not in {c["name"] for c in inspect(engine).get_columns("runbooks")}
    migrate(engine)
    assert "api_keys" in inspect(engine).get_table_names()
