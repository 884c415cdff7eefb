"""evolve(state, event) -> state: the fold. Pure: no I/O, no clock, no randomness."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from rb_common.events import Event, EventType
from rb_common.payloads import (
    AssumptionChecked,
    EventPayload,
    ExecutionRequested,
    StepFailed,
    StepScheduled,
    StepSkipped,
    StepsSkipped,
    StepStarted,
    StepSucceeded,
    TerminalPayload,
    TimerFired,
    TimerStarted,
)
from rb_common.statuses import ExecutionStatus
from rb_engine.coordinator import approvals
from rb_engine.coordinator import state as st
from rb_engine.coordinator.plan import plan
from rb_engine.coordinator.state import ExecutionState, Failure, StepState, updated
from rb_engine.coordinator.step_map import StepMap

Changes = dict[str, Any]


def evolve(state: ExecutionState, event: Event) -> ExecutionState:
    handler = _HANDLERS.get(event.type)
    changes = handler(state, event, event.payload) if handler else {}
    after = updated(state, now=event.time, seq=event.seq, last_hash=event.hash, **changes)
    return approvals.settle(after) if after.approvals else after


def fold(events: list[Event], state: ExecutionState | None = None) -> ExecutionState:
    state = state or ExecutionState()
    for event in events:
        state = evolve(state, event)
    return state


def _requested(state: ExecutionState, event: Event, data: ExecutionRequested) -> Changes:
    planned = plan(data.runbook)  # made once per definition, shared (never changed)
    runbook, order = planned.runbook, planned.order
    return dict(
        execution_id=event.execution_id,
        status=st.QUEUED,
        runbook=runbook,
        params=data.params,
        env=data.env,
        trigger=data.trigger,
        facts=data.facts,
        files=data.files or {},
        concurrency=data.concurrency or runbook.defaults.concurrency,
        order=order,
        deps=planned.deps,
        dependants=planned.dependants,
        position=planned.position,
        steps=StepMap((sid, StepState(id=sid)) for sid in order),
        frontier=0,
        ready=planned.ready,
        finished=0,
        requested_at=event.time,
        timer_waits=data.waits == "timers",
        skip_together=data.wind_down == "together",
    )


def _started(state: ExecutionState, event: Event, data: EventPayload) -> Changes:
    return {"status": st.EXEC_RUNNING, "started_at": event.time}


def _assumption(state: ExecutionState, event: Event, data: AssumptionChecked) -> Changes:
    return {"assumptions": {**state.assumptions, data.name: data.ok}}


def _step(state: ExecutionState, step_id: str, **changes: Any) -> Changes:
    """Changes to one step; keeps the ready set and the finished count in step with statuses."""
    before = state.steps[step_id]
    after = updated(before, **changes)
    steps = state.steps.set(step_id, after)  # persistent: O(log steps), the old map unchanged
    out: Changes = {"steps": steps}
    is_active = after.status in st.ACTIVE or after.rollback_status in st.ACTIVE
    if is_active != (step_id in state.active):
        out["active"] = state.active | {step_id} if is_active else state.active - {step_id}
    status = after.status
    if status == before.status:
        return out
    ready = set(state.ready)
    if status == st.RETRY_WAIT:
        ready.add(step_id)
    else:
        ready.discard(step_id)
    if status in st.FINISHED and before.status not in st.FINISHED:
        out["finished"] = state.finished + 1
        for child in state.dependants[step_id]:
            if steps[child].status == st.PENDING and all(
                steps[d].status in st.FINISHED for d in state.deps[child]
            ):
                ready.add(child)
        if state.position.get(step_id) == state.frontier:
            out["frontier"] = advanced_frontier(state.order, steps, state.frontier)
    elif before.status in st.FINISHED and status not in st.FINISHED:
        out["frontier"] = min(state.frontier, state.position[step_id])
    out["ready"] = frozenset(ready)
    return out


def advanced_frontier(order: tuple[str, ...], steps: StepMap, start: int = 0) -> int:
    """The first index from `start` on whose step in `order` is not finished (len(order) if
    none is). Moving it on as steps finish costs O(steps) over a whole execution."""
    at = start
    while at < len(order) and steps[order[at]].status in st.FINISHED:
        at += 1
    return at


def _scheduled(state: ExecutionState, event: Event, data: StepScheduled) -> Changes:
    if data.rollback:
        return _step(state, data.step_id, rollback_status=st.SCHEDULED, scheduled=data)
    return _step(
        state,
        data.step_id,
        scheduled=data,
        status=st.SCHEDULED,
        attempt=data.attempt,
        inputs=data.inputs,
        retry_at=None,
        deliveries=1,
    )


def _deliveries(state: ExecutionState, data: StepStarted | StepSucceeded | StepFailed) -> dict[str, int]:
    """A worker's report of a redelivered attempt (`delivery` > 1) raises the step's count."""
    if data.delivery > state.steps[data.step_id].deliveries:
        return {"deliveries": data.delivery}
    return {}


def _step_started(state: ExecutionState, event: Event, data: StepStarted) -> Changes:
    if data.rollback:
        return _step(state, data.step_id, rollback_status=st.RUNNING)
    current = state.steps[data.step_id]
    return _step(
        state,
        data.step_id,
        status=st.RUNNING,
        started_at=current.started_at or event.time,
        **_deliveries(state, data),
    )


def _succeeded(state: ExecutionState, event: Event, data: StepSucceeded) -> Changes:
    if data.rollback:
        return _step(state, data.step_id, rollback_status=st.SUCCEEDED)
    return _step(
        state,
        data.step_id,
        status=st.SUCCEEDED,
        started_at=_started_at(state, data, event),
        outputs=data.outputs,
        result=data.result,
        error=None,
        completed_at=event.time,
        **_deliveries(state, data),
    )


def _started_at(state: ExecutionState, data: StepSucceeded | StepFailed, event: Event) -> datetime:
    """When the step first started: its step.started event, else what its outcome reports."""
    current = state.steps[data.step_id].started_at
    if current is not None:
        return current
    return data.started_time or event.time


def _failed(state: ExecutionState, event: Event, data: StepFailed) -> Changes:
    step_id = data.step_id
    if data.rollback:
        return _step(state, step_id, rollback_status=st.FAILED, rollback_error=data.error)
    if data.will_retry:
        retry_at = datetime.fromtimestamp(
            event.time.timestamp() + float(data.retry_delay or 0), tz=event.time.tzinfo
        )
        return _step(
            state,
            step_id,
            status=st.RETRY_WAIT,
            error=data.error,
            attempt=data.attempt,
            retry_at=retry_at,
            **_deliveries(state, data),
        )
    changes = _step(
        state,
        step_id,
        status=st.FAILED,
        error=data.error,
        started_at=_started_at(state, data, event) if not data.stage else None,
        completed_at=event.time,
        attempt=max(data.attempt, state.steps[step_id].attempt),
        **_deliveries(state, data),
    )
    mode = state.definition.step(step_id).on_failure
    if mode != "continue" and not data.cancelled and state.failure is None:
        changes["failure"] = Failure(step_id=step_id, mode=mode, error=data.error or "")
    return changes


def _skipped(state: ExecutionState, event: Event, data: StepSkipped) -> Changes:
    return _step(state, data.step_id, status=st.SKIPPED, skip_reason=data.reason, completed_at=event.time)


def _steps_skipped(state: ExecutionState, event: Event, data: StepsSkipped) -> Changes:
    """Each step skipped as `step.skipped` skips it (`_step`), all in one change of the state:
    a wind-down skips thousands of steps at once."""
    skipped = {
        sid: updated(state.steps[sid], status=st.SKIPPED, skip_reason=data.reason, completed_at=event.time)
        for sid in data.step_ids
        if sid in state.steps
    }
    if not skipped:
        return {}
    steps = state.steps.updated(skipped)
    newly = [sid for sid in skipped if state.steps[sid].status not in st.FINISHED]
    ready = set(state.ready).difference(skipped)
    for sid in newly:
        for child in state.dependants[sid]:
            if steps[child].status == st.PENDING and all(
                steps[d].status in st.FINISHED for d in state.deps[child]
            ):
                ready.add(child)
    changes: Changes = {
        "steps": steps,
        "ready": frozenset(ready),
        "finished": state.finished + len(newly),
        "active": frozenset(
            sid for sid in state.active if sid not in skipped or skipped[sid].rollback_status in st.ACTIVE
        ),
    }
    if any(state.position.get(sid) == state.frontier for sid in newly):
        changes["frontier"] = advanced_frontier(state.order, steps, state.frontier)
    return changes


def _rollback(state: ExecutionState, event: Event, data: EventPayload) -> Changes:
    return {"rollback_started": True}


def _kpis(state: ExecutionState, event: Event, data: EventPayload) -> Changes:
    return {"kpis": data.dump()}  # {kpis: {name: {value, target, ok, error?}}, breached}


def _paused(state: ExecutionState, event: Event, data: EventPayload) -> Changes:
    return {"status": st.PAUSED} if state.status in (st.EXEC_RUNNING, st.WAITING_APPROVAL) else {}


def _resumed(state: ExecutionState, event: Event, data: EventPayload) -> Changes:
    return {"status": st.EXEC_RUNNING} if state.status == st.PAUSED else {}


def _cancel(state: ExecutionState, event: Event, data: EventPayload) -> Changes:
    return {} if state.terminal else {"cancel_requested": True}


def _timer_started(state: ExecutionState, event: Event, data: TimerStarted) -> Changes:
    if data.timer_id in state.timers:
        return {}
    return {"timers": {**state.timers, data.timer_id: (data.fire_time, False)}}


def _timer_fired(state: ExecutionState, event: Event, data: TimerFired) -> Changes:
    timer = state.timers.get(data.timer_id)
    if timer is None or timer[1]:
        return {}
    return {"timers": {**state.timers, data.timer_id: (timer[0], True)}}


def _terminal(status: ExecutionStatus) -> Callable[[ExecutionState, Event, TerminalPayload], Changes]:
    def handler(state: ExecutionState, event: Event, data: TerminalPayload) -> Changes:
        return {"status": status, "completed_at": event.time, "reason": data.reason}

    return handler


_HANDLERS: dict[EventType, Callable[[ExecutionState, Event, Any], Changes]] = {
    EventType.EXECUTION_REQUESTED: _requested,
    EventType.EXECUTION_STARTED: _started,
    EventType.EXECUTION_QUEUED: lambda state, event, data: {"held": True, "reason": data.reason},
    EventType.EXECUTION_DEQUEUED: lambda state, event, data: {"held": False, "reason": None},
    EventType.ASSUMPTION_CHECKED: _assumption,
    EventType.STEP_SCHEDULED: _scheduled,
    EventType.STEP_STARTED: _step_started,
    EventType.STEP_SUCCEEDED: _succeeded,
    EventType.STEP_FAILED: _failed,
    EventType.STEP_SKIPPED: _skipped,
    EventType.STEPS_SKIPPED: _steps_skipped,
    EventType.ROLLBACK_STARTED: _rollback,
    EventType.KPI_EVALUATED: _kpis,
    EventType.EXECUTION_PAUSED: _paused,
    EventType.EXECUTION_RESUMED: _resumed,
    EventType.EXECUTION_CANCEL_REQUESTED: _cancel,
    EventType.EXECUTION_SUCCEEDED: _terminal(st.EXEC_SUCCEEDED),
    EventType.EXECUTION_FAILED: _terminal(st.EXEC_FAILED),
    EventType.EXECUTION_ABORTED: _terminal(st.ABORTED),
    EventType.EXECUTION_CANCELLED: _terminal(st.CANCELLED),
    EventType.TIMER_STARTED: _timer_started,
    EventType.TIMER_FIRED: _timer_fired,
    EventType.APPROVAL_REQUESTED: lambda state, event, data: approvals.on_requested(state, event, data),
    EventType.APPROVAL_DECIDED: lambda state, event, data: approvals.on_decided(state, event, data),
}

# Flow control (branch, for_each, wait, wait_for_event; retrying a failed step): its own module.
from rb_engine.coordinator.flow_fold import FLOW_HANDLERS  # noqa: E402  (it uses _step above)

_HANDLERS.update(FLOW_HANDLERS)
