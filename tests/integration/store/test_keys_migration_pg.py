"""Migration 0004 (api_keys, runbooks.team) on PostgreSQL (a database of its own: it is migrated
down and up)."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from keys_migration_cases import check_keys_migration
from sqlalchemy.engine import make_url

from rb_common.settings import Settings
from rb_store.db import database_url, make_engine

pytestmark = pytest.mark.integration


def test_keys_migration_on_postgresql(postgres_url: str) -> None:
    name = f"rb_test_{uuid.uuid4().hex[:12]}"
    admin = make_url(postgres_url).set(database="postgres").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    engine = make_engine(database_url(Settings(database_url=url)))
    try:
        check_keys_migration(engine)
    finally:
        engine.dispose()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
