"""The alerts table's migration on SQLite."""

from __future__ import annotations

from pathlib import Path

from recorder_alerts_cases import check_alerts_migration

from rb_store.db import make_engine


def test_alerts_migration_on_sqlite(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'rb.db'}")
    try:
        check_alerts_migration(engine)
    finally:
        engine.dispose()
