"""Engines and migrations: PostgreSQL via psycopg 3 in production, SQLite as the embedded default."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, QueuePool, create_engine, event, make_url, text
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError

from rb_common.settings import Settings

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
MIGRATION_LOCK = 0x72622D6D6967  # "rb-mig": the advisory lock every migrating service takes
# Seconds a PostgreSQL connection may take to open (libpq's connect_timeout; one in the URL or
# in PGCONNECT_TIMEOUT wins): without it a server that silently drops packets (a failover, a
# firewall) held the request or step that opened the connection for psycopg's default of 130 s.
CONNECT_TIMEOUT = 10
_LIBPQ_DRIVERS = ("postgresql", "postgresql+psycopg", "postgresql+psycopg2")


def database_url(settings: Settings) -> str:
    if settings.database_url:
        url = settings.database_url
        for prefix in ("postgresql://", "postgres://"):
            if url.startswith(prefix):
                return "postgresql+psycopg://" + url[len(prefix) :]
        return url
    settings.home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(settings.home / 'rb.db').resolve()}"


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        # As many pooled connections as the API has threads (anyio's 40): with SQLAlchemy's
        # default (5 + 10 overflow) a loaded API opened and closed a connection, pragmas and all,
        # for most requests (~15% of its CPU).
        engine = create_engine(url, connect_args={"timeout": 30}, pool_size=40, max_overflow=10)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):
            # WAL lets the API read while the recorder writes from another process.
            cursor = dbapi_connection.cursor()
            # busy_timeout first: switching to WAL itself needs the lock other processes hold.
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10, connect_args=_connect_args(url))


def _connect_args(url: str) -> dict[str, int]:
    """The connect timeout for libpq drivers, unless the URL or the environment sets one."""
    parsed = make_url(url)
    if parsed.drivername not in _LIBPQ_DRIVERS or "connect_timeout" in parsed.query:
        return {}
    if os.environ.get("PGCONNECT_TIMEOUT"):
        return {}
    return {"connect_timeout": CONNECT_TIMEOUT}


def warm_pool(engine: Engine) -> int:
    """Open the pool's connections now (at start, in a thread), so the first burst of requests
    finds them open instead of each opening its own (and, on SQLite, setting its pragmas, which
    waits for the lock a writer holds). Returns how many were opened."""
    if not isinstance(engine.pool, QueuePool):  # e.g. an in-memory SQLite engine: nothing to open
        return 0
    connections = []
    try:
        for _ in range(engine.pool.size()):
            connection = engine.connect()
            connections.append(connection)
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:  # e.g. PostgreSQL's max_connections: opened on demand instead
        log.warning("opened %d pooled connections at start, then: %s", len(connections), exc)
    finally:
        for connection in connections:
            connection.close()  # back to the pool, open
    return len(connections)


def select_one(engine: Engine) -> bool:
    """The database answers (a readiness check; blocking, run it in a thread)."""
    with engine.connect() as conn:
        conn.execute(text("SELECT 1")).scalar_one()
    return True


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def migrate(engine: Engine) -> None:
    """Bring the schema to the latest revision (safe to call from every service at start-up)."""
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Services start together: without this lock two of them race to create
            # alembic_version on a fresh database and one fails. Released at commit.
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        config = alembic_config(engine)
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def transient_database_error(exc: BaseException) -> bool:
    """The database is unreachable or restarting (worth trying again), not refusing the work."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, (OperationalError, InterfaceError, TimeoutError, OSError))


async def migrate_when_reachable(engine: Engine, stop: asyncio.Event) -> bool:
    """Migrate, retrying while the database is unreachable or busy (a PostgreSQL still starting
    under docker-compose; a fresh SQLite file being opened by another process). False if `stop`
    was set first."""
    delay = 0.2
    while not stop.is_set():
        try:
            await asyncio.to_thread(migrate, engine)
            return True
        except OperationalError as exc:
            log.warning("database not ready (%s), retrying in %.1fs", str(exc).splitlines()[0], delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, 5.0)
    return False
