"""`sql_query`: one parameterised statement against a named connection (RB_CONNECTIONS).

SQLAlchemy is synchronous, so statements run in a worker thread; cancelling the step (its
timeout) asks the database to cancel the statement so the thread does not run on unseen.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import sqlite3
import threading
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from sqlalchemy import create_engine, make_url, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from rb_common.step_specs import SPECS
from rb_engine.steps.base import SpecValidated, StepContext, StepFailed

# How long a cancelled step waits for the database to acknowledge the cancel.
_CANCEL_GRACE_SECONDS = 5.0


def normalize_url(url: str) -> str:
    """Plain `postgresql://` URLs would pick psycopg2; this project ships psycopg 3."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def json_safe(value: Any) -> Any:
    """Row values as JSON types, so results can be recorded and read by JSONPath."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_safe(v) for v in value]
    return str(value)


def _is_sqlite_memory(url: str) -> bool:
    parsed = make_url(url)
    return parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:")


def _create_engine(url: str) -> Engine:
    if _is_sqlite_memory(url):
        # Statements run on pool threads; one shared connection keeps one in-memory database
        # for the whole run instead of a fresh empty one per thread (callers serialise use).
        return create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
    return create_engine(url, pool_pre_ping=True)


def _db_message(exc: SQLAlchemyError) -> str:
    orig = getattr(exc, "orig", None)
    message = str(orig if orig is not None else exc).strip()
    return message.splitlines()[0] if message else type(exc).__name__


def _transient(exc: OperationalError) -> bool:
    """OperationalError means connection/server trouble, except in sqlite3, which also uses it
    for syntax errors and missing tables; there only lock contention is worth a retry."""
    if isinstance(exc.orig, sqlite3.Error):
        message = str(exc.orig).lower()
        return "locked" in message or "busy" in message
    return True


class _Running:
    """The statement in flight, so the event loop side can cancel it from outside the thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._dbapi: Any = None
        self.cancelled = False

    def attach(self, dbapi_connection: Any) -> None:
        with self._lock:
            self._dbapi = dbapi_connection
            if self.cancelled:
                raise StepFailed("cancelled before the statement started")

    def cancel(self) -> None:
        with self._lock:
            self.cancelled = True
            conn = self._dbapi
        if conn is None:
            return
        # psycopg 3: cancel_safe()/cancel(); sqlite3: interrupt(). All are thread-safe.
        for name in ("cancel_safe", "cancel", "interrupt"):
            method = getattr(conn, name, None)
            if callable(method):
                with contextlib.suppress(Exception):
                    method()
                return


class SqlQueryStep(SpecValidated):
    """Keeps one engine (and its pool) per URL for the life of this plugin instance."""

    spec = SPECS["sql_query"]

    def __init__(self) -> None:
        self._engines: dict[str, tuple[Engine, threading.Lock | None]] = {}
        self._lock = threading.Lock()

    def _engine(self, url: str) -> tuple[Engine, threading.Lock | None]:
        """The URL's engine, and a lock when its single shared connection must not be
        used by two statements at once."""
        with self._lock:
            entry = self._engines.get(url)
            if entry is None:
                entry = (_create_engine(url), threading.Lock() if _is_sqlite_memory(url) else None)
                self._engines[url] = entry
            return entry

    def dispose(self) -> None:
        """Close every pooled connection; call when the executor shuts down."""
        with self._lock:
            engines, self._engines = [e for e, _ in self._engines.values()], {}
        for engine in engines:
            engine.dispose()

    def _execute(self, url: str, query: str, params: dict[str, Any], running: _Running) -> dict[str, Any]:
        engine, serial = self._engine(url)
        with serial or contextlib.nullcontext(), engine.begin() as conn:
            running.attach(conn.connection.dbapi_connection)
            result = conn.execute(text(query), params)
            if result.returns_rows:
                rows = [json_safe(dict(row._mapping)) for row in result]
                return {"rows": rows, "rowcount": len(rows)}
            return {"rows": [], "rowcount": result.rowcount}

    def _resolve(self, connection: Any, ctx: StepContext) -> str:
        """The URL of a named connection. Runbooks name connections and never give URLs: which
        databases steps reach (and as whom) is the operator's choice, made in RB_CONNECTIONS."""
        if not isinstance(connection, str) or not connection:
            raise StepFailed(
                "'connection' must be the name of a connection in RB_CONNECTIONS", retryable=False
            )
        url = ctx.settings.connections.get(connection)
        if url is None:
            known = ", ".join(sorted(ctx.settings.connections)) or "none configured"
            if ":" in connection or "/" in connection:
                # Not echoed: a URL may carry a password.
                raise StepFailed(
                    "sql_query takes a connection name, not a URL: name the database in "
                    f"RB_CONNECTIONS and use that name (known: {known})",
                    retryable=False,
                )
            raise StepFailed(f"unknown connection '{connection}' (known: {known})", retryable=False)
        return normalize_url(url)

    async def run(self, inputs: dict[str, Any], ctx: StepContext) -> Any:
        url = self._resolve(inputs.get("connection"), ctx)
        query = inputs.get("query")
        if not isinstance(query, str) or not query.strip():
            raise StepFailed("'query' must be a non-empty SQL string", retryable=False)
        params = inputs.get("params") or {}
        if not isinstance(params, dict):
            raise StepFailed("'params' must be a mapping of bind names", retryable=False)

        running = _Running()
        task = asyncio.ensure_future(asyncio.to_thread(self._execute, url, query, params, running))
        # The task's outcome is collected on every path, so no "never retrieved" warnings.
        task.add_done_callback(lambda t: None if t.cancelled() else t.exception())
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            running.cancel()
            await asyncio.wait({task}, timeout=_CANCEL_GRACE_SECONDS)
            raise
        except OperationalError as exc:
            raise StepFailed(f"database error: {_db_message(exc)}", retryable=_transient(exc)) from None
        except DBAPIError as exc:
            raise StepFailed(f"database error: {_db_message(exc)}", retryable=False) from None
        except SQLAlchemyError as exc:
            raise StepFailed(f"database error: {_db_message(exc)}", retryable=False) from None
