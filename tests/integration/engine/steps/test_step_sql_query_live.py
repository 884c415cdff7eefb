"""sql_query against the real local PostgreSQL and a sqlite file."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from rb_common.settings import Settings
from rb_engine.steps.base import StepContext, StepFailed
from rb_engine.steps.sql_query import SqlQueryStep

pytestmark = pytest.mark.integration

MakeCtx = Callable[..., StepContext]


def connected(make_ctx: MakeCtx, **connections: str) -> StepContext:
    """A step context whose settings name these connections (RB_CONNECTIONS)."""
    return make_ctx(settings=Settings(connections=connections))


@pytest.fixture
def step() -> Iterator[SqlQueryStep]:
    plugin = SqlQueryStep()
    try:
        yield plugin
    finally:
        plugin.dispose()


@pytest.fixture
def pg_table(postgres_url: str) -> Iterator[str]:
    """A uniquely named table, dropped afterwards whatever the test did."""
    name = f"rb_step_test_{uuid.uuid4().hex[:12]}"
    try:
        yield name
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {name}")


async def test_postgres_ddl_dml_and_typed_rows(
    step: SqlQueryStep, pg_table: str, postgres_url: str, make_ctx: MakeCtx
) -> None:
    ctx = connected(make_ctx, pg=postgres_url)
    created = await step.run(
        {
            "connection": "pg",
            "query": f"CREATE TABLE {pg_table} (id uuid PRIMARY KEY, name text, "
            "price numeric(10, 2), seen timestamptz, doc jsonb)",
        },
        ctx,
    )
    assert created["rows"] == []

    ids = [uuid.uuid4(), uuid.uuid4()]
    for i, entity_id in enumerate(ids):
        inserted = await step.run(
            {
                "connection": "pg",
                "query": f"INSERT INTO {pg_table} VALUES (:id, :name, :price, :seen, CAST(:doc AS jsonb))",
                "params": {
                    "id": str(entity_id),
                    "name": f"e{i}",
                    "price": 12.5 + i,
                    "seen": "2024-05-01T12:00:00+00:00",
                    "doc": '{"tags": ["a"]}',
                },
            },
            ctx,
        )
        assert inserted == {"rows": [], "rowcount": 1}

    # Committed: a separate connection sees the rows.
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute(f"SELECT count(*) FROM {pg_table}").fetchone() == (2,)

    selected = await step.run(
        {
            "connection": "pg",
            "query": f"SELECT id, name, price, seen AT TIME ZONE 'UTC' AS seen_utc, doc "
            f"FROM {pg_table} WHERE price >= :min ORDER BY name",
            "params": {"min": 0},
        },
        ctx,
    )
    assert selected["rowcount"] == 2
    assert selected["rows"][0] == {
        "id": str(ids[0]),
        "name": "e0",
        "price": 12.5,
        "seen_utc": "2024-05-01T12:00:00",
        "doc": {"tags": ["a"]},
    }

    updated = await step.run({"connection": "pg", "query": f"UPDATE {pg_table} SET name = upper(name)"}, ctx)
    assert updated == {"rows": [], "rowcount": 2}

    returning = await step.run(
        {
            "connection": "pg",
            "query": f"DELETE FROM {pg_table} WHERE name = :n RETURNING name",
            "params": {"n": "E1"},
        },
        ctx,
    )
    assert returning == {"rows": [{"name": "E1"}], "rowcount": 1}
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute(f"SELECT name FROM {pg_table}").fetchall() == [("E0",)]


async def test_named_connection_from_settings(
    step: SqlQueryStep, postgres_url: str, make_ctx: MakeCtx
) -> None:
    ctx = make_ctx(settings=Settings(connections={"reporting": postgres_url}))
    result = await step.run(
        {"connection": "reporting", "query": "SELECT :x + 1 AS answer", "params": {"x": 41}}, ctx
    )
    assert result == {"rows": [{"answer": 42}], "rowcount": 1}


async def test_unknown_connection_name(step: SqlQueryStep, make_ctx: MakeCtx) -> None:
    ctx = make_ctx(settings=Settings(connections={"reporting": "sqlite://"}))
    with pytest.raises(StepFailed) as err:
        await step.run({"connection": "warehouse", "query": "SELECT 1"}, ctx)
    assert err.value.retryable is False
    assert "reporting" in err.value.message


async def test_postgres_sql_error_is_not_retryable(
    step: SqlQueryStep, postgres_url: str, make_ctx: MakeCtx
) -> None:
    with pytest.raises(StepFailed) as err:
        await step.run(
            {"connection": "pg", "query": "SELECT * FROM rb_no_such_table_xyz"},
            connected(make_ctx, pg=postgres_url),
        )
    assert err.value.retryable is False
    assert 'relation "rb_no_such_table_xyz" does not exist' in err.value.message


async def test_unreachable_database_is_retryable(step: SqlQueryStep, make_ctx: MakeCtx) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    down = f"postgresql://postgres@127.0.0.1:{port}/test?connect_timeout=3"
    with pytest.raises(StepFailed) as err:
        await step.run({"connection": "down", "query": "SELECT 1"}, connected(make_ctx, down=down))
    assert err.value.retryable is True


async def test_cancelling_cancels_the_statement_in_postgres(
    step: SqlQueryStep, postgres_url: str, make_ctx: MakeCtx
) -> None:
    marker = f"rb-cancel-{uuid.uuid4().hex}"
    query = f"SELECT pg_sleep(30) /* {marker} */"
    ctx = connected(make_ctx, pg=postgres_url)
    task = asyncio.create_task(step.run({"connection": "pg", "query": query}, ctx))

    def running() -> int:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                "AND query LIKE %s AND pid <> pg_backend_pid()",
                (f"%{marker}%",),
            ).fetchone()
        return int(row[0]) if row else 0

    deadline = time.monotonic() + 10
    while await asyncio.to_thread(running) == 0:
        assert time.monotonic() < deadline, "statement never started"
        await asyncio.sleep(0.02)

    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, timeout=10)
    assert time.monotonic() - started < 2.0
    assert await asyncio.to_thread(running) == 0


async def test_sqlite_file(step: SqlQueryStep, tmp_path: Path, make_ctx: MakeCtx) -> None:
    url = "local"
    ctx = connected(make_ctx, local=f"sqlite:///{tmp_path / 'rb.db'}")
    await step.run({"connection": url, "query": "CREATE TABLE t (id INTEGER, name TEXT)"}, ctx)
    inserted = await step.run(
        {"connection": url, "query": "INSERT INTO t VALUES (:id, :name)", "params": {"id": 1, "name": "one"}},
        ctx,
    )
    assert inserted["rowcount"] == 1
    result = await step.run({"connection": url, "query": "SELECT id, name FROM t"}, ctx)
    assert result == {"rows": [{"id": 1, "name": "one"}], "rowcount": 1}


async def test_sqlite_missing_table_is_not_retryable(
    step: SqlQueryStep, tmp_path: Path, make_ctx: MakeCtx
) -> None:
    with pytest.raises(StepFailed) as err:
        await step.run(
            {"connection": "local", "query": "SELECT * FROM nope"},
            connected(make_ctx, local=f"sqlite:///{tmp_path / 'x.db'}"),
        )
    assert err.value.retryable is False
    assert "no such table: nope" in err.value.message


async def test_missing_bind_parameter(step: SqlQueryStep, make_ctx: MakeCtx) -> None:
    with pytest.raises(StepFailed) as err:
        await step.run({"connection": "mem", "query": "SELECT :x"}, connected(make_ctx, mem="sqlite://"))
    assert err.value.retryable is False


async def test_sqlite_in_memory_persists_across_statements(step: SqlQueryStep, make_ctx: MakeCtx) -> None:
    ctx = connected(make_ctx, mem="sqlite://")
    await step.run({"connection": "mem", "query": "CREATE TABLE m (v INTEGER)"}, ctx)
    await asyncio.gather(
        *(
            step.run({"connection": "mem", "query": "INSERT INTO m VALUES (:v)", "params": {"v": v}}, ctx)
            for v in range(5)
        )
    )
    result = await step.run({"connection": "mem", "query": "SELECT sum(v) AS s FROM m"}, ctx)
    assert result == {"rows": [{"s": 10}], "rowcount": 1}


async def test_unparseable_url_is_not_retryable(step: SqlQueryStep, make_ctx: MakeCtx) -> None:
    with pytest.raises(StepFailed) as err:
        await step.run(
            {"connection": "bad", "query": "SELECT 1"}, connected(make_ctx, bad="nosuchdialect://x/y")
        )
    assert err.value.retryable is False


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://postgres:hunter2@127.0.0.1:5432/test",
        "sqlite://",
        "sqlite:////var/lib/rb/rb.db",
        "postgresql+psycopg://db.internal/x",
    ],
)
async def test_a_url_in_the_runbook_is_refused(step: SqlQueryStep, make_ctx: MakeCtx, url: str) -> None:
    """Which databases steps reach is the operator's choice (RB_CONNECTIONS), never a runbook's."""
    ctx = connected(make_ctx, reporting="sqlite://")
    with pytest.raises(StepFailed) as err:
        await step.run({"connection": url, "query": "SELECT 1"}, ctx)
    assert err.value.retryable is False
    assert err.value.message == (
        "sql_query takes a connection name, not a URL: name the database in RB_CONNECTIONS and use "
        "that name (known: reporting)"
    )
    assert "hunter2" not in err.value.message
