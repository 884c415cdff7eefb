"""Realistic execution streams for the notifier tests, made by the real in-process runner.

Shared with tests/integration/notifier (its conftest puts this directory on sys.path).
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from rb_common.events import Event, EventType
from rb_common.loader import load_runbook_text
from rb_common.ports import InMemoryEventStore
from rb_common.settings import Settings
from rb_engine.clock import FakeClock
from rb_engine.fixtures import Fixture, FixtureExecutor
from rb_engine.runner import PluginExecutor, Runner, RunRequest
from rb_engine.steps.registry import default_registry

API_TOKEN = "tok-live-4f9d2c7a1b"  # a secret the runner knows (and masks itself)
DB_PASSWORD = "hunter2-db-pass-99"  # a value only RB_SECRET_* tells the notifier about
ALERT_TRIGGER = {
    "type": "alert",
    "source": "alertmanager",
    "alertname": "HighErrorRate",
    "severity": "critical",
}

DEFAULT_NOTIFY = """\
notify:
  - "on": [started, failed, succeeded]
    slack: {channel: "#ops"}
  - "on": [failed]
    email: {to: [oncall@example.com], cc: [lead@example.com]}
"""


def runbook_text(notify: str = DEFAULT_NOTIFY, runbook_id: str = "nightly-enrichment") -> str:
    return f"""\
id: {runbook_id}
name: Nightly Enrichment
version: 1.2.0
owner: analytics-team
environment: production
kpis:
  max_duration_seconds: 300
  min_success_rate: 0.95
  entities_fetched: "${{len(steps.ingest.outputs.entities)}}"
{notify}steps:
  - id: ingest
    type: data_fetch
    description: Fetch entities from the source API
    inputs: {{source_url: "https://api.example.com/entities", auth_token: "${{secrets.API_TOKEN}}"}}
    outputs: {{entities: "$.data.entities"}}
  - id: enrich
    type: api_call
    depends_on: [ingest]
    retry: {{max_attempts: 2, initial_delay: 1s, jitter: false}}
    inputs: {{endpoint: "https://enrich.example.com/v1", token: "${{secrets.API_TOKEN}}"}}
"""


def run_execution(
    *,
    fail: bool,
    notify: str = DEFAULT_NOTIFY,
    execution_id: str | None = None,
    trigger: dict[str, Any] | None = None,
    start: datetime | None = None,
) -> list[Event]:
    """Run the runbook in memory against fixtures; the recorded events, oldest first."""
    runbook, _ = load_runbook_text(runbook_text(notify))
    if fail:
        error = f"HTTP 503 from enrich.example.com (db password {DB_PASSWORD}, token {API_TOKEN})"
        enrich: Any = [{"error": error}, {"error": error}]
    else:
        enrich = {"result": {"enriched": 3}}
    fixture = Fixture.model_validate(
        {
            "secrets": {"API_TOKEN": API_TOKEN},
            "steps": {"ingest": {"result": {"data": {"entities": [1, 2, 3]}}}, "enrich": enrich},
        }
    )
    store = InMemoryEventStore()
    runner = Runner(
        store,
        FixtureExecutor(PluginExecutor(default_registry()), fixture),
        FakeClock(start or datetime.now(UTC)),
        Settings(),
        secrets=fixture.secrets,
    )
    execution_id = execution_id or "nt" + uuid.uuid4().hex[:16]
    request = RunRequest(
        runbook=runbook,
        execution_id=execution_id,
        trigger=ALERT_TRIGGER if trigger is None else trigger,
        actor="alertmanager",
    )
    asyncio.run(runner.run(request))  # outside any running loop: see arun_execution
    return store.read(execution_id)


async def arun_execution(**kwargs: Any) -> list[Event]:
    """run_execution from inside an event loop (the runner itself is async)."""
    return await asyncio.to_thread(run_execution, **kwargs)


def append(events: list[Event], type_: EventType, data: dict[str, Any], seconds: float = 1.0) -> Event:
    """A further event of the same execution (e.g. approval.requested, which no step emits yet)."""
    last = events[-1]
    event = Event.sealed(
        prev_hash=last.hash,
        id=uuid.uuid4().hex,
        execution_id=last.execution_id,
        seq=last.seq + 1,
        type=type_,
        time=last.time + timedelta(seconds=seconds),
        actor="rb-executor",
        data=data,
    )
    events.append(event)
    return event


def first(events: list[Event], type_: EventType) -> Event:
    return next(e for e in events if e.type == type_)


def upto(events: list[Event], event: Event) -> list[Event]:
    return [e for e in events if e.seq <= event.seq]
