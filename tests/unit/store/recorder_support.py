"""Shared by the recorder's unit and integration tests: realistic event streams (the in-process
runner over fixtures, on a fake clock) and the check that projection rows match the fold.

Integration tests import this module through tests/integration/recorder/conftest.py.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select

from rb_common.events import Event, EventType
from rb_common.loader import load_runbook_text
from rb_common.ports import InMemoryEventStore
from rb_common.settings import Settings
from rb_engine.clock import FakeClock
from rb_engine.coordinator import ExecutionState, fold
from rb_engine.fixtures import Fixture, FixtureExecutor
from rb_engine.runner import PluginExecutor, Runner, RunRequest
from rb_engine.steps.registry import default_registry
from rb_store.queries import get_execution
from rb_store.tables import runbook_executions, runbook_step_logs

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
NATS_URL = os.environ["RB_TEST_NATS_URL"]

# name -> (runbook YAML, fixture, expected execution status)
SCENARIOS: dict[str, tuple[str, dict[str, Any], str]] = {
    "retries_then_succeeds": (
        """
id: rec-retry
name: Retry then succeed
version: 1.2.3
legal_basis: contract
kpis: {min_success_rate: 0.5, fetched: '${steps.fetch.outputs.n}'}
steps:
  - id: report
    type: http
    depends_on: [fetch]
    inputs: {url: 'http://x/report/${steps.fetch.outputs.n}'}
  - id: fetch
    type: http
    inputs: {url: 'http://x/fetch', token: '${secrets.TOKEN}'}
    outputs: {n: $.n}
    retry: {max_attempts: 3, initial_delay: 1s}
  - id: never
    type: http
    depends_on: [fetch]
    when: '${steps.fetch.outputs.n > 100}'
    inputs: {url: 'http://x/never'}
""",
        {
            "params": {"region": "eu"},
            "trigger": {"type": "manual", "actor": "alice"},
            "steps": {
                "fetch": [{"error": "HTTP 503"}, {"error": "HTTP 502"}, {"result": {"n": 7}}],
                "report": {"result": {"ok": True}},
            },
        },
        "SUCCEEDED",
    ),
    "abort_skips_dependants": (
        """
id: rec-abort
name: Abort
steps:
  - {id: a, type: http, inputs: {url: 'http://x/a'}, retry: {max_attempts: 2}}
  - {id: b, type: http, depends_on: [a], inputs: {url: 'http://x/b'}}
""",
        {"steps": {"a": [{"error": "boom", "retryable": False}]}},
        "FAILED",
    ),
    "continue_then_succeeds": (
        """
id: rec-continue
name: Continue
steps:
  - {id: a, type: http, inputs: {url: 'http://x/a'}, on_failure: continue}
  - {id: b, type: http, depends_on: [a], inputs: {url: 'http://x/b'}, outputs: {v: $.v}}
""",
        {"steps": {"a": {"error": "nope", "retryable": False}, "b": {"result": {"v": [1, 2]}}}},
        "SUCCEEDED",
    ),
    "rollback_with_failed_compensation": (
        """
id: rec-rollback
name: Rollback
steps:
  - {id: drain, type: http, inputs: {url: 'http://x/d'}, rollback: {type: http, inputs: {url: 'http://x/u'}}}
  - {id: stop, type: http, depends_on: [drain], inputs: {url: 'http://x/s'},
     rollback: {type: http, inputs: {url: 'http://x/start'}}}
  - {id: migrate, type: http, depends_on: [stop], inputs: {url: 'http://x/m'}, on_failure: rollback}
""",
        {
            "steps": {
                "drain": {"result": {}},
                "stop": {"result": {}},
                "migrate": {"error": "schema locked", "retryable": False},
                "stop.rollback": {"error": "start refused", "retryable": False},
                "drain.rollback": {"result": {}},
            }
        },
        "FAILED",
    ),
    "assumption_aborts": (
        """
id: rec-assume
name: Assumption
assumptions:
  - validated: true
steps:
  - {id: a, type: http, inputs: {url: 'http://x/a'}}
""",
        {"assumptions": {"validated": False}},
        "ABORTED",
    ),
}


def new_execution_id(prefix: str = "rec") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


async def record_run(
    yaml_text: str, fixture: dict[str, Any] | None = None, execution_id: str | None = None
) -> tuple[ExecutionState, list[Event]]:
    """Run a runbook in process against a fixture; returns the final state and its events."""
    runbook, _ = load_runbook_text(yaml_text)
    fx = Fixture.model_validate({"clock": T0.isoformat(), **(fixture or {})})
    store = InMemoryEventStore()
    runner = Runner(
        store,
        FixtureExecutor(PluginExecutor(default_registry()), fx),
        FakeClock(fx.clock),
        Settings(),
        secrets={"TOKEN": "s3cr3t"},
    )
    request = RunRequest(
        runbook=runbook,
        params=fx.params,
        trigger=fx.trigger,
        facts=fx.assumptions,
        actor="tester",
        execution_id=execution_id or new_execution_id(),
    )
    state = await runner.run(request)
    return state, store.read(state.execution_id)


def make_run(
    yaml_text: str, fixture: dict[str, Any] | None = None, execution_id: str | None = None
) -> tuple[ExecutionState, list[Event]]:
    return asyncio.run(record_run(yaml_text, fixture, execution_id))


def scenario_events(name: str, execution_id: str | None = None) -> list[Event]:
    yaml_text, fixture, expected = SCENARIOS[name]
    state, events = make_run(yaml_text, fixture, execution_id)
    assert state.status == expected, (name, state.status, state.reason)
    return events


async def ascenario_events(name: str, execution_id: str | None = None) -> list[Event]:
    """`scenario_events` for async tests (which already run an event loop)."""
    yaml_text, fixture, expected = SCENARIOS[name]
    state, events = await record_run(yaml_text, fixture, execution_id)
    assert state.status == expected, (name, state.status, state.reason)
    return events


def make_event(
    execution_id: str,
    seq: int,
    type_: EventType = EventType.NOTIFICATION_SENT,
    at: datetime | None = None,
    **data: Any,
) -> Event:
    return Event(
        id=uuid.uuid4().hex,
        execution_id=execution_id,
        seq=seq,
        type=type_,
        time=at or T0 + timedelta(seconds=seq),
        actor="tester",
        data=data,
    )


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def main_errors(events: list[Event], step_id: str) -> list[str]:
    return [
        e.data["error"]
        for e in events
        if e.type == EventType.STEP_FAILED
        and e.data["step_id"] == step_id
        and e.data.get("phase") != "rollback"
    ]


def assert_projection_matches_fold(engine: Engine, events: list[Event]) -> None:
    """The rows of `events[0].execution_id` say exactly what the fold of `events` says."""
    state = fold(events)
    execution_id = state.execution_id
    with engine.connect() as connection:
        row = (
            connection.execute(select(runbook_executions).where(runbook_executions.c.id == execution_id))
            .mappings()
            .one()
        )
        steps = {
            r["step_id"]: r
            for r in connection.execute(
                select(runbook_step_logs).where(runbook_step_logs.c.execution_id == execution_id)
            ).mappings()
        }
    assert state.runbook is not None
    assert row["status"] == state.status
    assert row["runbook_id"] == state.runbook.id and row["runbook_version"] == state.runbook.version
    assert row["last_seq"] == state.seq == events[-1].seq
    assert row["kpis"] == state.kpis
    assert row["trigger"] == state.trigger
    assert row["reason"] == state.reason
    assert _utc(row["requested_at"]) == state.requested_at
    assert _utc(row["started_at"]) == state.started_at
    assert _utc(row["completed_at"]) == state.completed_at
    requested = events[0].data
    assert row["actor_id"] == (requested.get("actor") or events[0].actor)
    metadata = row["metadata"]
    assert metadata["params"] == state.params
    assert metadata["assumptions"] == state.assumptions
    assert metadata["legal_basis"] == (requested.get("legal_basis") or state.runbook.legal_basis)
    assert metadata["step_order"] == [s.id for s in state.runbook.steps]
    assert set(steps) == set(state.steps)
    for step_id, step in state.steps.items():
        r = steps[step_id]
        assert r["status"] == step.status, step_id
        assert r["attempts"] == step.attempt, step_id
        assert r["outputs"] == step.outputs, step_id
        assert r["inputs"] == step.inputs, step_id
        assert r["rollback_status"] == step.rollback_status, step_id
        assert _utc(r["started_at"]) == step.started_at, step_id
        assert _utc(r["completed_at"]) == step.completed_at, step_id
        assert (r["errors"] or []) == main_errors(events, step_id), step_id
        if step.error:
            assert r["errors"][-1] == step.error
    detail = get_execution(engine, execution_id)
    assert detail is not None
    assert [s["id"] for s in detail["steps"]] == [s.id for s in state.runbook.steps]
    for entry in detail["steps"]:
        step = state.steps[entry["id"]]
        expected_error = step.error if step.status != "SUCCEEDED" else None
        assert entry["error"] == expected_error, entry
