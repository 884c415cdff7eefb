"""Tampering with the recorder's events table in PostgreSQL: replay and audit name the event."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text

from rb_common.loader import load_runbook, referenced_files
from rb_common.params import resolve_params
from rb_common.ports import InMemoryEventStore
from rb_common.settings import Settings
from rb_engine.clock import FakeClock
from rb_engine.fixtures import FixtureExecutor, load_fixture
from rb_engine.runner import PluginExecutor, Runner, RunRequest
from rb_engine.steps.registry import default_registry
from rb_store.db import make_engine, migrate
from rb_store.recorder import Recorder

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
PACK = REPO / "runbooks" / "rb-001-entity-enrichment"
ADMIN = os.environ.get("RB_TEST_POSTGRES_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    name = f"rb_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield ADMIN.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def recorded(database: str) -> tuple[str, object]:
    """An execution with retries, recorded into PostgreSQL by the real Recorder."""
    fixture = load_fixture(PACK / "fixtures/enrich-retries.yaml")
    store = InMemoryEventStore()
    runner = Runner(
        store,
        FixtureExecutor(PluginExecutor(default_registry()), fixture),
        FakeClock(fixture.clock),
        Settings(),
        secrets=fixture.secrets,
        base_dir=PACK,
    )
    runbook = load_runbook(PACK / "runbook.yaml")
    state = asyncio.run(
        runner.run(
            RunRequest(
                runbook=runbook,
                params=resolve_params(runbook, fixture.params),
                facts=fixture.assumptions,
                files=referenced_files(runbook, PACK),
            )
        )
    )
    assert state.status == "SUCCEEDED" and state.steps["enrich"].attempt == 3
    engine = make_engine(database.replace("postgresql://", "postgresql+psycopg://"))
    migrate(engine)
    recorder = Recorder(engine)
    for event in store.read(state.execution_id):
        recorder.apply(event)
    return state.execution_id, engine


def rb(database: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "RB_DATABASE_URL": database,
        "RB_HOME": str(tmp_path),
        "NO_COLOR": "1",
        "COLUMNS": "200",
        "RB_NATS_URL": "nats://127.0.0.1:1",
    }
    return subprocess.run(
        [sys.executable, "-m", "rb_cli", *args, "--source", "db"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def edit_event(engine, execution_id: str, seq: int, change) -> None:  # type: ignore[no-untyped-def]
    with engine.begin() as conn:
        row = conn.execute(
            text("SELECT event FROM events WHERE execution_id = :e AND seq = :s"),
            {"e": execution_id, "s": seq},
        ).one()
        event = row.event if isinstance(row.event, dict) else json.loads(row.event)
        change(event)
        conn.execute(
            text("UPDATE events SET event = :v WHERE execution_id = :e AND seq = :s"),
            {"v": json.dumps(event), "e": execution_id, "s": seq},
        )


def seq_of(engine, execution_id: str, event_type: str, step: str, nth: int = 0) -> int:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT seq, event FROM events WHERE execution_id = :e ORDER BY seq"), {"e": execution_id}
        ).all()
    matches = [
        r.seq
        for r in rows
        if (r.event if isinstance(r.event, dict) else json.loads(r.event))["type"] == event_type
        and (r.event if isinstance(r.event, dict) else json.loads(r.event))["data"].get("step_id") == step
    ]
    return int(matches[nth])


def test_untouched_record_verifies(database: str, recorded, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    execution_id, _ = recorded
    assert "REPLAY VERIFIED" in rb(database, tmp_path, "replay", execution_id).stdout
    assert "AUDIT OK" in rb(database, tmp_path, "audit", "verify", execution_id).stdout


def test_an_edited_output_is_named(database: str, recorded, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    execution_id, engine = recorded
    seq = seq_of(engine, execution_id, "step.succeeded", "enrich")
    edit_event(engine, execution_id, seq, lambda e: e["data"]["outputs"]["enriched"][0].update(country="XX"))
    replay = rb(database, tmp_path, "replay", execution_id)
    assert replay.returncode == 1 and f"step 'enrich': outputs.enriched (event {seq})" in replay.stdout
    audit = rb(database, tmp_path, "audit", "verify", execution_id)
    assert audit.returncode == 1 and f"event {seq} (" in audit.stdout and "edited" in audit.stdout


def test_a_dropped_event_is_named(database: str, recorded, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    execution_id, engine = recorded
    seq = seq_of(engine, execution_id, "step.failed", "enrich", 1)
    with engine.begin() as conn:
        conn.execute(
            text("DELETE FROM events WHERE execution_id = :e AND seq = :s"), {"e": execution_id, "s": seq}
        )
    replay = rb(database, tmp_path, "replay", execution_id)
    assert replay.returncode == 1 and "REPLAY DEVIATES" in replay.stdout
    audit = rb(database, tmp_path, "audit", "verify", execution_id)
    assert audit.returncode == 1 and f"event {seq + 1} (" in audit.stdout


def test_reordered_events_are_named(database: str, recorded, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    execution_id, engine = recorded
    first = seq_of(engine, execution_id, "step.succeeded", "ingest")
    with engine.begin() as conn:  # swap the two events' contents, keeping the table's seq column
        a = conn.execute(
            text("SELECT event FROM events WHERE execution_id = :e AND seq = :s"),
            {"e": execution_id, "s": first},
        ).scalar_one()
        b = conn.execute(
            text("SELECT event FROM events WHERE execution_id = :e AND seq = :s"),
            {"e": execution_id, "s": first + 1},
        ).scalar_one()
        for seq, value in ((first, b), (first + 1, a)):
            conn.execute(
                text("UPDATE events SET event = :v WHERE execution_id = :e AND seq = :s"),
                {
                    "v": json.dumps(value if isinstance(value, dict) else json.loads(value)),
                    "e": execution_id,
                    "s": seq,
                },
            )
    replay = rb(database, tmp_path, "replay", execution_id)
    assert replay.returncode == 1
    audit = rb(database, tmp_path, "audit", "verify", execution_id)
    assert audit.returncode == 1 and f"event {first + 1} (" in audit.stdout
