"""Timers: the runbook's `timeout` is a recorded timer that the runner fires on its clock."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from rb_common.events import Event, EventType
from rb_common.loader import load_runbook_text
from rb_common.ports import InMemoryEventStore
from rb_common.settings import Settings
from rb_engine.clock import Clock, FakeClock, SystemClock
from rb_engine.coordinator import fold
from rb_engine.replay import Replayer
from rb_engine.runner import PluginExecutor, Runner, RunRequest
from rb_engine.steps.registry import default_registry

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def runbook(timeout: str, wait: str) -> str:
    return f"""
id: timed
name: timed
version: 1.0.0
owner: tests
legal_basis: tests
timeout: {timeout}
steps:
  - {{id: first, type: transform, inputs: {{a: 1}}}}
  - {{id: slow, type: wait, depends_on: [first], inputs: {{seconds: "{wait}"}}}}
  - {{id: after, type: transform, depends_on: [slow], inputs: {{b: 2}}}}
"""


async def run(text: str, clock: Clock) -> list[Event]:
    model, _ = load_runbook_text(text)
    store = InMemoryEventStore()
    runner = Runner(store, PluginExecutor(default_registry()), clock, Settings())
    await runner.run(RunRequest(runbook=model, execution_id="t1"))
    return store.read("t1")


def types(events: list[Event]) -> list[str]:
    return [e.type.value for e in events]


async def test_a_timeout_that_passes_fails_the_run_in_virtual_time_and_replays() -> None:
    events = await run(runbook("5m", "10m"), FakeClock(T0))
    state = fold(events)
    assert state.status == "FAILED" and state.reason is not None and "timed out" in state.reason
    [started] = [e for e in events if e.type == EventType.TIMER_STARTED and e.data["timer_id"] == "deadline"]
    assert started.data["timer_id"] == "deadline"
    assert datetime.fromisoformat(started.data["fire_at"]) == T0 + timedelta(minutes=5)
    assert [e.data["timer_id"] for e in events if e.type == EventType.TIMER_FIRED] == ["deadline"]
    succeeded = {e.data["step_id"] for e in events if e.type == EventType.STEP_SUCCEEDED}
    assert succeeded == {"first"}, "the timer fired before the wait's outcome was taken in"
    slow = [e for e in events if e.data.get("step_id") == "slow" and e.type == EventType.STEP_FAILED]
    assert slow and slow[0].data["cancelled"] is True
    assert "after" not in {e.data.get("step_id") for e in events if e.type == EventType.STEP_SCHEDULED}
    assert events[-1].type == EventType.EXECUTION_FAILED and events[-1].data["timed_out"] is True
    report = await Replayer(PluginExecutor(default_registry()), Settings()).replay(events)
    assert report.deviations == []


async def test_a_run_that_ends_in_time_never_fires_its_timer() -> None:
    events = await run(runbook("15m", "10m"), FakeClock(T0))
    assert fold(events).status == "SUCCEEDED"
    fired = [e.data["timer_id"] for e in events if e.type == EventType.TIMER_FIRED]
    assert EventType.TIMER_STARTED.value in types(events)
    assert "deadline" not in fired and fired == ["slow@1"]  # the wait's own timer
    assert "timed_out" not in events[-1].data


async def test_on_the_real_clock_the_deadline_stops_a_long_step() -> None:
    began = time.monotonic()
    events = await run(runbook("0.3s", "30s"), SystemClock())
    assert fold(events).status == "FAILED"
    assert time.monotonic() - began < 5, "the wait was cancelled at the deadline"


@pytest.mark.parametrize("bad", ["0", "-5s", "soon"])
def test_the_timeout_must_be_a_positive_duration(bad: str) -> None:
    from rb_common.errors import RunbookLoadError

    with pytest.raises(RunbookLoadError):
        load_runbook_text(runbook(bad, "1s"))
