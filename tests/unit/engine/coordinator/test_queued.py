"""An execution the executor's admission holds QUEUED (execution.queued): decide() starts
nothing until execution.dequeued, a cancel ends it at once, and the record replays VERIFIED."""

from __future__ import annotations

from harness import Drive

from rb_common.events import EventType
from rb_common.loader import load_runbook_text
from rb_common.settings import Settings
from rb_engine.coordinator import decide
from rb_engine.coordinator import state as st
from rb_engine.coordinator.applier import EXECUTOR, Fact, controlled, requested
from rb_engine.replay import Replayer
from rb_engine.runner import PluginExecutor
from rb_engine.steps.registry import default_registry

YAML = """\
id: queued
name: Queued
concurrency: {limit: 1, on_limit: queue}
steps:
  - {id: a, type: transform, inputs: {x: 1}, outputs: {x: $.x}}
"""


def held(drive: Drive) -> None:
    runbook, _ = load_runbook_text(YAML)
    data = {"runbook": runbook.snapshot(), "waits": "timers"}
    facts = requested(drive.state, data, "tests")
    facts.append(
        Fact(EventType.EXECUTION_QUEUED, {"reason": "r has 1 running", "limit": "runbook"}, EXECUTOR)
    )
    drive.apply(facts)


def test_a_held_execution_waits_until_dequeued_then_runs_to_the_end() -> None:
    drive = Drive(YAML, script={"a": [{"x": 1}]})
    held(drive)
    assert drive.state.status == st.QUEUED and drive.state.held
    assert drive.state.reason == "r has 1 running"
    assert decide(drive.state) == []
    assert [e.type for e in drive.events] == [EventType.EXECUTION_REQUESTED, EventType.EXECUTION_QUEUED]
    state = drive.drive(drive.apply([Fact(EventType.EXECUTION_DEQUEUED, {}, EXECUTOR)]))
    assert state.status == st.EXEC_SUCCEEDED
    types = [e.type for e in drive.events]
    assert types[2:4] == [EventType.EXECUTION_DEQUEUED, EventType.EXECUTION_STARTED]


async def test_a_held_execution_replays_verified() -> None:
    drive = Drive(YAML, script={"a": [{"x": 1}]})
    held(drive)
    drive.drive(drive.apply([Fact(EventType.EXECUTION_DEQUEUED, {}, EXECUTOR)]))
    report = await Replayer(PluginExecutor(default_registry()), Settings()).replay(drive.events)
    assert report.verified, [str(d) for d in report.deviations]


async def test_cancelling_a_held_execution_ends_it_without_starting() -> None:
    drive = Drive(YAML)
    held(drive)
    drive.apply(controlled(drive.state, EventType.EXECUTION_CANCEL_REQUESTED, {"reason": "x"}, "key:op"))
    assert drive.state.status == st.CANCELLED
    types = [e.type for e in drive.events]
    assert EventType.EXECUTION_STARTED not in types and types[-1] == EventType.EXECUTION_CANCELLED
    report = await Replayer(PluginExecutor(default_registry()), Settings()).replay(drive.events)
    assert report.verified, [str(d) for d in report.deviations]
