"""Timers through the executor service: the runbook's timeout fires from a recorded timer, also
when the executor that started it was killed in between."""

from __future__ import annotations

import time

import pytest
from services_support import Services, publish_trigger, wait_for_event, wait_terminal

from rb_common.bus import Bus
from rb_common.events import EventType
from rb_common.payloads import TimerStarted
from rb_engine.coordinator import fold

pytestmark = pytest.mark.integration


def timed(runbook_id: str, timeout: str) -> str:
    return (
        f"id: {runbook_id}\nname: Timed\ntimeout: {timeout}\nsteps:\n"
        "  - {id: slow, type: wait, inputs: {seconds: 60}}\n"
        "  - {id: after, type: transform, depends_on: [slow], inputs: {a: 1}}\n"
    )


async def test_the_timeout_stops_the_run_at_its_time(services: Services, bus: Bus) -> None:
    services.start("executor")
    began = time.monotonic()
    execution_id = await publish_trigger(bus, timed("timer-live", "2s"))
    events = await wait_terminal(bus, execution_id, timeout=30)
    took = time.monotonic() - began
    state = fold(events)
    assert state.status == "FAILED" and "timed out" in (state.reason or ""), services.logs()
    assert events[-1].data.get("timed_out") is True
    assert [e.type for e in events].count(EventType.TIMER_FIRED) == 1
    assert 2 <= took < 10, f"fired after {took:.1f}s"


async def test_a_timer_survives_the_executor_that_started_it(services: Services, bus: Bus) -> None:
    first = services.start("executor")
    execution_id = await publish_trigger(bus, timed("timer-crash", "4s"))
    await wait_for_event(bus, execution_id, lambda e: e.type == EventType.TIMER_STARTED)
    services.kill(first)
    services.start("executor")
    events = await wait_terminal(bus, execution_id, timeout=40)
    state = fold(events)
    assert state.status == "FAILED" and "timed out" in (state.reason or ""), services.logs()
    fired = [e for e in events if e.type == EventType.TIMER_FIRED]
    assert len(fired) == 1, "fired once, by the executor that took over"
    started = next(e for e in events if e.type == EventType.TIMER_STARTED)
    assert fired[0].time >= started.payload_as(TimerStarted).fire_time
