"""API integration fixtures: a private PostgreSQL database per session and the real NATS."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from sqlalchemy.engine import make_url

from rb_common.bus import Bus, connect

NATS_URL = os.environ["RB_TEST_NATS_URL"]


def _admin_dsn(postgres_url: str) -> str:
    return make_url(postgres_url).set(database="postgres").render_as_string(hide_password=False)


def create_database(postgres_url: str) -> str:
    """CREATE DATABASE rb_test_<random>; its URL."""
    import psycopg

    name = f"rb_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_admin_dsn(postgres_url), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return make_url(postgres_url).set(database=name).render_as_string(hide_password=False)


def drop_database(postgres_url: str, url: str) -> None:
    import psycopg

    name = make_url(url).database
    with psycopg.connect(_admin_dsn(postgres_url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def api_pg_url(postgres_url: str) -> Iterator[str]:
    """A fresh database for this session's API tests, dropped at the end."""
    url = create_database(postgres_url)
    try:
        yield url
    finally:
        drop_database(postgres_url, url)


@pytest.fixture
def scratch_pg_url(postgres_url: str) -> Iterator[str]:
    """A database a test may break (drop under a running app); dropped at the end regardless."""
    url = create_database(postgres_url)
    try:
        yield url
    finally:
        drop_database(postgres_url, url)


@pytest.fixture
async def nats_bus() -> AsyncIterator[Bus]:
    try:
        bus = await connect(NATS_URL, name="rb-api-integration-tests", connect_timeout=5)
    except Exception as exc:
        pytest.fail(f"NATS at {NATS_URL} is not reachable: {exc}")
    yield bus
    await bus.close()
