"""Migration 0004 (api_keys, runbooks.team) on SQLite."""

from __future__ import annotations

from pathlib import Path

from keys_migration_cases import check_keys_migration

from rb_store.db import make_engine


def test_keys_migration_on_sqlite(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'rb.db'}")
    try:
        check_keys_migration(engine)
    finally:
        engine.dispose()
