"""The hot path's shortcuts record exactly what the long way records, byte for byte.

Each shortcut skips work whose result is known (a worker's own typed report is not dumped and
parsed again); these tests run both ways on the same input and compare the events' data (keys
in the same order), typed payloads, JSON and hashes.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from harness import T0

from rb_common.events import Event, EventType
from rb_common.loader import load_runbook_text
from rb_common.payloads import EventPayload, StepFailed, StepStarted, StepSucceeded
from rb_engine.coordinator import ExecutionState
from rb_engine.coordinator.applier import Fact, accepted, apply, reported, requested

RUNBOOK = """
id: fast
name: fast
version: 1.0.0
owner: tests
legal_basis: tests
steps:
  - {id: a, type: transform, retry: {max_attempts: 3}}
  - {id: b, type: transform, rollback: {type: transform}}
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
    return apply(ExecutionState(execution_id="ex1"), requested(ExecutionState(), data, "tests"), seal).state


def same_facts(typed: list[Fact], parsed: list[Fact]) -> None:
    assert len(typed) == len(parsed)
    for fast, slow in zip(typed, parsed, strict=True):
        assert (fast.type, fast.actor) == (slow.type, slow.actor)
        assert list(fast.data.items()) == list(slow.data.items()), "same keys, same order, same values"
        assert fast.payload is not None and slow.payload is not None
        assert list(fast.payload.dump().items()) == list(slow.payload.dump().items())


def same_events(state: ExecutionState, typed: list[Fact], parsed: list[Fact]) -> None:
    fast, slow = apply(state, typed, seal), apply(state, parsed, seal)
    assert [e.to_json() for e in fast.events] == [e.to_json() for e in slow.events]
    assert [e.hash for e in fast.events] == [e.hash for e in slow.events]
    assert fast.state == slow.state


REPORTS: list[EventPayload] = [
    StepStarted(step_id="a", attempt=1, phase="main"),
    StepStarted(step_id="a", attempt=1, phase="main", delivery=2),
    StepSucceeded(
        step_id="a",
        attempt=1,
        phase="main",
        result={"z": 1, "a": [1, 2.5, None, "x"]},
        outputs={"n": 1},
        digest="sha256:00",
        meta={"exit_code": 0},
    ).model_copy(update={"started_at": "2025-01-01T00:00:01+00:00"}),
    StepFailed(step_id="a", attempt=1, phase="main", error="boom", retryable=True),
    StepFailed(
        step_id="a", attempt=1, phase="main", error="boom", retryable=False, timed_out=True
    ).model_copy(update={"started_at": "2025-01-01T00:00:01+00:00", "delivery": 2}),
    StepFailed(step_id="a", attempt=2, phase="main", error="stale attempt", retryable=True),
    StepSucceeded(step_id="nope", attempt=1, phase="main", result=None, outputs={}),
]


def test_a_typed_report_records_what_its_dump_through_the_inbox_records() -> None:
    state = started()
    for report in REPORTS:
        typed = accepted(state, report)
        parsed = reported(state, report.TYPE.value, report.dump())
        same_facts(typed, parsed)
        same_events(state, typed, parsed)
    assert accepted(state, REPORTS[3])[0].data["will_retry"] is True, "the retry decision is added"
    assert accepted(state, REPORTS[5]) == [], "another attempt's report is stale either way"


def test_a_typed_report_after_the_end_is_dropped_as_its_dump_is() -> None:
    state = started()
    for step_id in ("a", "b"):
        ok = StepSucceeded(step_id=step_id, attempt=1, phase="main", result={}, outputs={})
        state = apply(state, accepted(state, ok), seal).state
    assert state.terminal
    late = StepFailed(step_id="a", attempt=1, phase="main", error="late", retryable=True)
    assert accepted(state, late) == reported(state, "step.failed", late.dump()) == []
