"""Migration 0004 (api_keys, runbooks.team) on PostgreSQL (a database of its own: it is migrated
down and up)."""

from __future__ import annotations

import pytest
from keys_migration_cases import check_keys_migration
from sqlalchemy import Engine

pytestmark = pytest.mark.integration


def test_keys_migration_on_postgresql(own_pg_engine: Engine) -> None:
    check_keys_migration(own_pg_engine)
