"""The one applier: facts in, every decision that follows recorded; stale reports dropped."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from harness import T0, Drive

from rb_common.events import Event, EventType
from rb_common.loader import load_runbook_text
from rb_engine.coordinator import ExecutionState, evolve
from rb_engine.coordinator.applier import apply, controlled, lost, reported, requested

RUNBOOK = """
id: applier
name: applier
version: 1.0.0
owner: tests
legal_basis: tests
steps:
  - {id: a, type: transform, retry: {max_attempts: 2}}
  - {id: b, type: transform}
"""


def seal(state: ExecutionState, type_: EventType, data: dict[str, Any], actor: str) -> Event:
    return Event.sealed(
        prev_hash=state.last_hash,
        id=f"e{state.seq + 1}",
        execution_id="ex1",
        seq=state.seq + 1,
        type=type_,
        time=T0 + timedelta(seconds=state.seq),
        actor=actor,
        data=data,
    )


def started() -> ExecutionState:
    runbook, _ = load_runbook_text(RUNBOOK)
    data = {"runbook": runbook.snapshot(), "params": {}, "facts": {}}
    applied = apply(ExecutionState(execution_id="ex1"), requested(ExecutionState(), data, "tests"), seal)
    assert [c.step_id for c in applied.run] == ["a", "b"]
    assert [e.type for e in applied.events][:2] == [
        EventType.EXECUTION_REQUESTED,
        EventType.EXECUTION_STARTED,
    ]
    return applied.state


def test_a_request_is_recorded_once_with_every_decision_after_it() -> None:
    state = started()
    assert requested(state, {}, "again") == [], "the execution exists: a repeated trigger is no news"


def test_outcomes_of_another_attempt_or_after_the_end_are_dropped() -> None:
    state = started()
    failed = {"step_id": "a", "attempt": 1, "phase": "main", "error": "x", "retryable": True}
    [fact] = reported(state, "step.failed", failed)
    assert (fact.type, fact.actor) == (EventType.STEP_FAILED, "rb-worker")
    assert fact.data["will_retry"] is True and fact.data["retry_delay"] >= 0, "the retry decision is added"
    assert fact.payload is not None and fact.payload.dump()["will_retry"] is True
    applied = apply(state, [fact], seal)
    [retry] = applied.run
    assert (retry.step_id, retry.attempt) == ("a", 2)
    assert reported(applied.state, "step.succeeded", {**failed, "result": {}}) == [], "attempt 1 is over"
    assert reported(applied.state, "no.such.type", {}) == []


def test_a_second_start_is_news_only_for_a_later_delivery() -> None:
    state = started()
    start = {"step_id": "a", "attempt": 1, "phase": "main"}
    state = apply(state, reported(state, "step.started", start), seal).state
    assert reported(state, "step.started", start) == []
    assert len(reported(state, "step.started", {**start, "delivery": 2})) == 1


def test_with_no_facts_it_catches_up_on_decisions_never_recorded() -> None:
    """A driver that crashed between recording an outcome and the decisions it leads to."""
    state = started()
    for step_id in ("a", "b"):
        ok = {"step_id": step_id, "attempt": 1, "phase": "main", "result": {}, "outputs": {}}
        event = seal(state, EventType.STEP_SUCCEEDED, ok, "rb-worker")
        state = evolve(state, event)  # recorded, but nothing decided after it
    applied = apply(state, [], seal)
    assert applied.events and applied.state.terminal
    assert applied.events[-1].type == EventType.EXECUTION_SUCCEEDED


def test_a_cancel_is_recorded_by_the_applier_and_handed_to_the_driver() -> None:
    state = started()
    applied = apply(state, controlled(state, "execution.cancel_requested", {}, "alice"), seal)
    assert sorted(applied.cancel) == ["a", "b"]
    failed = [e for e in applied.events if e.type == EventType.STEP_FAILED]
    assert {e.data["step_id"] for e in failed} == {"a", "b"}
    assert all(e.data["cancelled"] is True for e in failed)
    assert applied.state.terminal
    late = {"step_id": "a", "attempt": 1, "phase": "main", "error": "cancelled", "cancelled": True}
    assert reported(applied.state, "step.failed", late) == [], "the attempt's own report is stale"
    assert controlled(applied.state, "execution.paused", {}, "alice") == [], "finished"


def test_a_lost_task_fails_only_an_attempt_still_running() -> None:
    from rb_engine.coordinator import RunStep

    state = started()
    command = RunStep("a", "transform", 1, "main", {}, 60.0, "ex1:a:1")
    [fact] = lost(state, command, 10)
    assert fact.type == EventType.STEP_FAILED and fact.data["lost"] is True and fact.data["will_retry"] is False
    assert lost(state, RunStep("a", "transform", 2, "main", {}, 60.0, "ex1:a:2"), 10) == []


def test_the_harness_drives_through_the_applier() -> None:
    drive = Drive(RUNBOOK, script={"a": [("fail", True), {}]})
    assert drive.run().status == "SUCCEEDED"
    assert drive.types("a").count("step.scheduled") == 2
