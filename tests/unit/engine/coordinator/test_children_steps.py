"""`runbook` and `notify` steps in the kernel: ordinary steps whose outcomes come from elsewhere
(the child's end, the notifier's report), recorded through the one applier; the stream replays
VERIFIED, and an outcome that arrives after the step was cancelled is dropped."""

from __future__ import annotations

import asyncio
from typing import Any

from harness import Drive

from rb_common.events import EventType
from rb_common.loader import load_runbook_text
from rb_common.settings import Settings
from rb_engine.coordinator.applier import controlled, requested
from rb_engine.replay import Replayer
from rb_engine.runner import PluginExecutor
from rb_engine.steps.registry import default_registry

RUNBOOK = """
id: parent
name: Parent
steps:
  - id: child
    type: runbook
    inputs: {runbook: hello, params: {who: ops}}
    outputs: {message: "$.outputs.greet.message"}
  - id: tell
    type: notify
    depends_on: [child]
    inputs: {message: "child said ${steps.child.outputs.message}", slack: {channel: "#ops"}}
"""

CHILD_RESULT = {
    "execution_id": "c1",
    "runbook": "hello",
    "status": "SUCCEEDED",
    "outputs": {"greet": {"message": "hello ops"}},
}


def verified(drive: Drive) -> bool:
    report = asyncio.run(Replayer(PluginExecutor(default_registry()), Settings()).replay(drive.events))
    assert report.verified, [str(d) for d in report.deviations]
    return True


def start(drive: Drive) -> Any:
    runbook, _ = load_runbook_text(drive.yaml_text)
    return drive.apply(requested(drive.state, {"runbook": runbook.snapshot()}, "tests"))


def test_the_notifiers_records_then_its_outcome_finish_the_step_and_replay() -> None:
    drive = Drive(RUNBOOK)
    applied = start(drive)
    [child] = applied.run
    assert (child.step_type, child.inputs) == ("runbook", {"runbook": "hello", "params": {"who": "ops"}})
    applied = drive.report(
        EventType.STEP_SUCCEEDED,
        {
            "step_id": "child",
            "attempt": 1,
            "phase": "main",
            "result": CHILD_RESULT,
            "outputs": {"message": "hello ops"},
        },
    )
    [tell] = applied.run
    assert tell.inputs["message"] == "child said hello ops"
    scheduled = drive.events[-1]
    assert scheduled.type == EventType.STEP_SCHEDULED and scheduled.data["step_type"] == "notify"
    # What the notifier reports: its records of the channel, then the step's outcome.
    record = {
        "event_id": scheduled.id,
        "event_type": "step.scheduled",
        "channel": "slack:#ops",
        "attempts": 1,
        "on": "step",
    }
    drive.report(EventType.NOTIFICATION_SENDING, {**record, "at": "2025-01-01T00:00:01+00:00"})
    drive.report(EventType.NOTIFICATION_SENT, {**record, "ts": "1.0001"})
    result = {"channels": {"slack:#ops": {"attempts": 1, "ts": "1.0001"}}}
    drive.report(
        EventType.STEP_SUCCEEDED,
        {"step_id": "tell", "attempt": 1, "phase": "main", "result": result, "outputs": {}},
    )
    assert drive.state.status == "SUCCEEDED"
    assert drive.types()[-2:] == ["kpi.evaluated", "execution.succeeded"]
    assert verified(drive)


def test_a_failed_child_fails_the_step_and_a_late_notifier_outcome_is_dropped() -> None:
    drive = Drive(RUNBOOK)
    start(drive)
    drive.report(
        EventType.STEP_FAILED,
        {
            "step_id": "child",
            "attempt": 1,
            "phase": "main",
            "error": "child execution c1 of hello ended failed: step 'greet' failed",
            "retryable": False,
        },
    )
    assert drive.state.status == "FAILED"
    assert drive.state.steps["tell"].status == "SKIPPED"
    assert verified(drive)

    cancelled = Drive(RUNBOOK)
    start(cancelled)
    cancelled.report(
        EventType.STEP_SUCCEEDED,
        {
            "step_id": "child",
            "attempt": 1,
            "phase": "main",
            "result": CHILD_RESULT,
            "outputs": {"message": "hello ops"},
        },
    )
    cancelled.apply(
        controlled(cancelled.state, "execution.cancel_requested", {"requested_via": "api"}, "key:ops")
    )
    assert cancelled.state.status == "CANCELLED"
    late = cancelled.report(
        EventType.STEP_SUCCEEDED,
        {"step_id": "tell", "attempt": 1, "phase": "main", "result": {"channels": {}}, "outputs": {}},
    )
    assert late.events == []  # stale: the step was cancelled
    assert verified(cancelled)
