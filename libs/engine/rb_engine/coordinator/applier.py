"""The one applier: what the outside reports, and every decision that follows, as events.

Every driver of the coordinator — the in-process runner (`rb run`, `rb test`), the executor
service over JetStream, and the test harness — records history the same way:

1. `accept(state, report)` turns a report from outside the coordinator (a trigger, a step's
   outcome, an operator's command, a notifier's receipt, a lost task) into the events to record,
   or none when the report is stale or repeated (an outcome of an older attempt, a second
   start, anything after the end).
2. `apply(state, facts, seal)` records those facts, then asks `decide()` again after every
   event until it has nothing more to say: an `Emit` is recorded as is, a `RunStep` as
   `step.scheduled` (and returned in `run`, for the driver to execute), a `CancelStep` as
   `step.failed {cancelled}` (and returned in `cancel`, for the driver to stop the attempt;
   the attempt's own late outcome is then stale and dropped by `accept`).

Pure: no clock, no ids, no I/O — `seal` makes the event (id, time, hash) for the driver.
Replay (rb_engine.replay) checks a recorded stream against the same `decide()`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from pydantic import ValidationError

from rb_common.events import Event, EventType
from rb_common.payloads import EventPayload, StepFailed, StepStarted, StepSucceeded, TimerFired, parse_payload
from rb_engine.coordinator import approvals
from rb_engine.coordinator import state as st
from rb_engine.coordinator.commands import CancelStep, Emit, RunStep, StartTimer
from rb_engine.coordinator.decide import decide, retry_plan
from rb_engine.coordinator.evolve import evolve
from rb_engine.coordinator.retries import refusal
from rb_engine.coordinator.state import ExecutionState

EXECUTOR = "rb-executor"
WORKER = "rb-worker"
NOTIFIER = "rb-notifier"


class Fact(NamedTuple):
    """An event before it is sealed. `data` is written as given (a reported dict passes through
    as the worker wrote it); `payload`, when the applier has parsed it already, is its typed
    view, handed to the event so that the fold does not parse it again."""

    type: EventType
    data: dict[str, Any]
    actor: str
    payload: EventPayload | None = None


Seal = Callable[[ExecutionState, EventType, dict[str, Any], str], Event]

NOTIFICATIONS = frozenset(
    {
        EventType.NOTIFICATION_SENDING,
        EventType.NOTIFICATION_RETRYING,
        EventType.NOTIFICATION_SENT,
        EventType.NOTIFICATION_FAILED,
    }
)
CONTROLS = frozenset(
    {
        EventType.EXECUTION_CANCEL_REQUESTED,
        EventType.EXECUTION_PAUSED,
        EventType.EXECUTION_RESUMED,
        EventType.APPROVAL_DECIDED,  # a person's decision on an approval step (approvals.decided)
        EventType.STEP_RETRY_REQUESTED,  # an operator's retry of a failed step (retries)
    }
)
OUTCOMES = frozenset({EventType.STEP_STARTED, EventType.STEP_SUCCEEDED, EventType.STEP_FAILED})


@dataclass
class Applied:
    state: ExecutionState
    events: list[Event] = field(default_factory=list)
    run: list[RunStep] = field(default_factory=list)
    cancel: list[str] = field(default_factory=list)
    timers: list[StartTimer] = field(default_factory=list)  # started: the driver fires them


def cancelled(step_id: str, attempt: int, phase: str) -> StepFailed:
    """The record of an attempt the coordinator stopped."""
    return StepFailed(
        step_id=step_id, attempt=attempt, phase=phase, error="cancelled", cancelled=True, retryable=False
    )


def apply(
    state: ExecutionState,
    facts: list[Fact],
    seal: Seal,
    observe: Callable[[Event, ExecutionState], None] | None = None,
) -> Applied:
    """Record `facts`, then every decision that follows. With no facts it still decides: a
    driver that crashed between recording a fact and its decisions catches up here.
    `observe(event, state)` sees each event with the state it leads to."""
    applied = Applied(state)

    def record(
        type_: EventType, data: dict[str, Any], actor: str = EXECUTOR, payload: EventPayload | None = None
    ) -> None:
        event = seal(applied.state, type_, data, actor)
        if payload is not None:
            event.with_payload(payload)  # a decision's own payload: the fold need not parse it
        applied.events.append(event)
        applied.state = evolve(applied.state, event)
        if observe is not None:
            observe(event, applied.state)

    for fact in facts:
        record(fact.type, fact.data, fact.actor, fact.payload)
    while commands := decide(applied.state, first=True):
        command = commands[0]  # re-decide after every event: the state moved
        if isinstance(command, Emit):
            record(command.type, command.data, payload=command.payload)
        elif isinstance(command, RunStep):
            record(EventType.STEP_SCHEDULED, command.event_data())
            applied.run.append(command)
        elif isinstance(command, CancelStep):
            # Recorded here, not by whoever runs the attempt: a dead worker must not keep the
            # execution open.
            step = applied.state.steps[command.step_id]
            phase = "rollback" if step.rollback_status in st.ACTIVE else "main"
            stopped = cancelled(command.step_id, step.attempt, phase)
            record(EventType.STEP_FAILED, stopped.dump(), payload=stopped)
            applied.cancel.append(command.step_id)
        elif isinstance(command, StartTimer):
            started = command.payload
            record(EventType.TIMER_STARTED, started.dump(), payload=started)
            applied.timers.append(command)
    return applied


def requested(state: ExecutionState, data: dict[str, Any], actor: str) -> list[Fact]:
    """A start request: news only for an execution that does not exist yet."""
    if state.status != st.NEW:
        return []  # a repeated or duplicate trigger: the execution exists already
    return [Fact(EventType.EXECUTION_REQUESTED, data, actor)]


def controlled(state: ExecutionState, kind: str, data: dict[str, Any], actor: str) -> list[Fact]:
    """An operator's cancel, pause or resume, or a decision on an approval: news while the
    execution runs."""
    type_ = _event_type(kind)
    if type_ == EventType.STEP_RETRY_REQUESTED:  # the one control of a finished execution
        step_id = data.get("step_id")
        return [] if not isinstance(step_id, str) or refusal(state, step_id) else [Fact(type_, data, actor)]
    if type_ not in CONTROLS or state.status == st.NEW or state.terminal:
        return []
    if type_ == EventType.APPROVAL_DECIDED:
        return approvals.decided(state, data, actor)
    return [Fact(type_, data, actor)]


def reported(state: ExecutionState, kind: str, data: dict[str, Any]) -> list[Fact]:
    """A worker's outcome or a notifier's receipt, if it is news; stale or repeated reports
    are dropped. A failed main attempt gets the retry decision (`will_retry`, `retry_delay`)."""
    type_ = _event_type(kind)
    if type_ is None:
        return []
    if type_ not in NOTIFICATIONS and type_ not in OUTCOMES:
        return []
    try:
        report = parse_payload(type_, data)
    except ValidationError:
        return []  # malformed: nothing the fold could apply
    return accepted(state, report, data)


def accepted(state: ExecutionState, report: EventPayload, data: dict[str, Any] | None = None) -> list[Fact]:
    """A report already typed: what `reported` makes of it once parsed. A worker in the
    coordinator's process hands over its own model, so the report is neither dumped into a
    message nor parsed again; `data` (the report as written) defaults to `report.dump()`, which
    is what the worker would have sent."""
    type_ = report.TYPE
    if type_ not in NOTIFICATIONS and type_ not in OUTCOMES:
        return []
    if data is None:
        data = report.dump()
    if type_ in NOTIFICATIONS:
        # Facts about the record, appended even after the end; the notifier's message ids make
        # a repeated report a duplicate that the inbox drops.
        return [] if state.status == st.NEW else [Fact(type_, dict(data), NOTIFIER)]
    if state.status == st.NEW or state.terminal:
        return []
    assert isinstance(report, StepStarted | StepSucceeded | StepFailed)
    step = state.steps.get(report.step_id)
    if step is None:
        return []
    main = not report.rollback
    current = step.status if main else step.rollback_status
    if main and step.attempt != report.attempt:
        return []
    if isinstance(report, StepStarted):
        # Also once per redelivery of the attempt (its worker died mid-step), so the record
        # shows every run, including those a crash cut short.
        again = main and current == st.RUNNING and report.delivery > step.deliveries
        return [Fact(type_, dict(data), WORKER, report)] if current == st.SCHEDULED or again else []
    if current not in st.ACTIVE:
        return []
    if isinstance(report, StepFailed) and main:
        will_retry, delay = retry_plan(state, report.step_id, report.attempt, bool(report.retryable))
        # Written after what the worker wrote, as the coordinator's part of the record.
        decided = {"will_retry": will_retry, "retry_delay": delay}
        return [Fact(type_, {**data, **decided}, WORKER, report.model_copy(update=decided))]
    # A quick step never said it had started: its outcome carries `started_at` instead.
    return [Fact(type_, dict(data), WORKER, report)]


def fired(state: ExecutionState, timer_id: str) -> list[Fact]:
    """A timer's time has come: news once, while the execution runs and the timer waits."""
    timer = state.timers.get(timer_id)
    if timer is None or timer[1] or state.terminal:
        return []
    payload = TimerFired(timer_id=timer_id)
    return [Fact(EventType.TIMER_FIRED, payload.dump(), EXECUTOR, payload)]


def due(state: ExecutionState, now: datetime) -> list[Fact]:
    """Every timer whose time has come by `now`, earliest first."""
    pending = sorted(state.pending_timers().items(), key=lambda item: (item[1], item[0]))
    return [fact for tid, at in pending if at <= now for fact in fired(state, tid)]


def lost(state: ExecutionState, command: RunStep, deliveries: Any) -> list[Fact]:
    """JetStream gave up on a task (MaxDeliver reached, never acknowledged): its attempt fails,
    unless its outcome did arrive after all or the step has moved on."""
    step = state.steps.get(command.step_id)
    if step is None or state.terminal:
        return []
    current = step.rollback_status if command.phase == "rollback" else step.status
    if current not in st.ACTIVE or (command.phase == "main" and step.attempt != command.attempt):
        return []
    failed = StepFailed(
        step_id=command.step_id,
        attempt=command.attempt,
        phase=command.phase,
        error=f"lost: delivered to workers {deliveries} times, never finished "
        "(the step crashed or hung its worker each time)",
        lost=True,
        retryable=False,
        will_retry=False,
        retry_delay=0.0,
    )
    return [Fact(EventType.STEP_FAILED, failed.dump(), EXECUTOR, failed)]


def _event_type(kind: str) -> EventType | None:
    try:
        return EventType(kind)
    except ValueError:
        return None  # not one of ours: nothing to record
