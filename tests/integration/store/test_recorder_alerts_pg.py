"""The alerts table's migration on PostgreSQL (a database of its own: it is migrated down and up)."""

from __future__ import annotations

import pytest
from recorder_alerts_cases import check_alerts_migration
from sqlalchemy import Engine

pytestmark = pytest.mark.integration


def test_alerts_migration_on_postgresql(own_pg_engine: Engine) -> None:
    check_alerts_migration(own_pg_engine)
