"""Recorder integration fixtures: a private PostgreSQL database per session, NATS helpers.

The contract and projection tests are shared with the unit tests (tests/unit/recorder), whose
directory is put on sys.path here so both suites run the very same test functions.
"""

from __future__ import annotations

import contextlib
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from rb_common.settings import Settings
from rb_recorder.db import database_url, make_engine, migrate

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "unit" / "recorder"))

from recorder_support import NATS_URL  # (importable thanks to the line above)


@pytest.fixture(scope="session")
def pg_database_url(postgres_url: str) -> Iterator[str]:
    """A fresh database (rb_test_<random>) for this session, dropped at the end."""
    import psycopg

    name = f"rb_test_{uuid.uuid4().hex[:12]}"
    admin = make_url(postgres_url).set(database="postgres")
    admin_dsn = admin.render_as_string(hide_password=False)
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_engine(pg_database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url(Settings(database_url=pg_database_url)))
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
async def consumer_name() -> AsyncIterator[str]:
    """A private durable consumer name; the consumer is deleted after the test."""
    from nats.js.errors import NotFoundError

    from rb_common.bus import DEFAULT_NAMES, connect

    name = f"recorder-test-{uuid.uuid4().hex[:12]}"
    yield name
    bus = await connect(NATS_URL, name="rb-recorder-test-cleanup")
    try:
        with contextlib.suppress(NotFoundError):
            await bus.js.delete_consumer(DEFAULT_NAMES.events_stream, name)
    finally:
        await bus.close()
