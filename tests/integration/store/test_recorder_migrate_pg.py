"""Services migrate the same fresh PostgreSQL database at start-up, at the same time."""

from __future__ import annotations

import threading
import uuid

import psycopg
import pytest
from sqlalchemy import text

from rb_store.db import make_engine, migrate

pytestmark = pytest.mark.integration

ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def test_concurrent_migrations_of_a_fresh_database_all_succeed() -> None:
    name = f"rb_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    errors: list[str] = []
    start = threading.Barrier(6)

    def service() -> None:
        engine = make_engine(url)
        try:
            start.wait()
            migrate(engine)
        except Exception as exc:  # collected: the assertion names what went wrong
            errors.append(repr(exc)[:200])
        finally:
            engine.dispose()

    try:
        threads = [threading.Thread(target=service) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert errors == []
        engine = make_engine(url)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar_one() == 1
        engine.dispose()
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
