"""The runner on a fake clock: waits and retry delays take no wall time."""

from __future__ import annotations

import asyncio
import time

from rb_common.loader import load_runbook_text
from rb_common.ports import InMemoryEventStore
from rb_common.settings import Settings
from rb_engine.clock import FakeClock
from rb_engine.fixtures import Fixture, FixtureExecutor
from rb_engine.runner import PluginExecutor, Runner, RunRequest
from rb_engine.steps.registry import default_registry


def test_runner_waits_are_not_sleeps() -> None:
    runbook, _ = load_runbook_text("""
id: fake
name: Fake
steps:
  - {id: w, type: wait, inputs: {seconds: 5m}}
  - {id: h, type: http, inputs: {url: "http://127.0.0.1:9/x"}, retry: {max_attempts: 3, initial_delay: 1m}}
""")
    fixture = Fixture.model_validate(
        {"steps": {"h": [{"error": "HTTP 503"}, {"error": "HTTP 503"}, {"result": {}}]}}
    )
    clock = FakeClock(fixture.clock)
    runner = Runner(
        InMemoryEventStore(), FixtureExecutor(PluginExecutor(default_registry()), fixture), clock, Settings()
    )
    start = time.monotonic()
    state = asyncio.run(runner.run(RunRequest(runbook=runbook)))
    assert state.status == "SUCCEEDED" and state.steps["h"].attempt == 3
    assert time.monotonic() - start < 1
    assert state.duration() >= 300
