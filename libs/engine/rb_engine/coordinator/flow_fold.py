"""The fold of the flow-control events: `step.waiting`, `event.received`, `step.retry_requested`.

Registered into `evolve`'s handlers (rb_engine.coordinator.evolve imports this module last).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rb_common.events import Event, EventType
from rb_common.payloads import EventReceived, StepRetryRequested, StepWaiting
from rb_engine.coordinator import state as st
from rb_engine.coordinator.evolve import Changes, _step, advanced_frontier
from rb_engine.coordinator.flow import iteration_id, parent_of
from rb_engine.coordinator.state import DEADLINE, ExecutionState, StepState
from rb_engine.coordinator.step_map import StepMap

ITERATION_ATTEMPTS = 100  # RetryPolicy.max_attempts is at most 100


def _waiting(state: ExecutionState, event: Event, data: StepWaiting) -> Changes:
    sid = data.step_id
    inputs = data.inputs if data.items is None else {**(data.inputs or {}), "items": data.items}
    changes = _step(
        state,
        sid,
        status=st.RUNNING,
        attempt=data.attempt,
        inputs=inputs,
        result=None,
        error=None,
        retry_at=None,
        started_at=event.time,
        scheduled=None,
    )
    if data.items is None:
        return changes
    # for_each: one sub-step per item, `<id>[<i>]`, after the parent in the order. After an
    # operator's retry of the loop (its attempt n > 1) their attempts start at 100·(n-1) + 1:
    # a retry policy makes at most 100, so idempotency keys never repeat an earlier run's.
    ids = [iteration_id(sid, i) for i in range(len(data.items))]
    base = ITERATION_ATTEMPTS * (data.attempt - 1)
    steps = changes["steps"].updated({i: StepState(id=i, attempt=base, retry_base=base) for i in ids})
    at = state.order.index(sid) + 1
    order = (*state.order[:at], *ids, *state.order[at:])
    changes.update(
        steps=steps,
        order=order,
        position={s: i for i, s in enumerate(order)},
        deps={**state.deps, **{i: () for i in ids}},
        dependants={**state.dependants, **{i: () for i in ids}},
    )
    return changes


def _received(state: ExecutionState, event: Event, data: EventReceived) -> Changes:
    current = state.steps.get(data.step_id)
    if current is None or current.status != st.RUNNING or current.attempt != data.attempt:
        return {}
    received = {"subject": data.subject, "correlation": data.correlation, "data": data.data}
    return _step(state, data.step_id, result={"received": received})


def reset_set(state: ExecutionState, step_id: str) -> set[str]:
    """What a retry of `step_id` runs again: it, its transitive dependants, and the steps the
    failure's wind-down skipped or cancelled (they never ran to an end)."""
    reset = {step_id}
    todo = [step_id]
    while todo:
        for child in state.dependants.get(todo.pop(), ()):
            if child not in reset:
                reset.add(child)
                todo.append(child)
    for sid, current in state.steps.items():
        if parent_of(sid) is not None:
            continue
        ended = current.status == st.SKIPPED and (current.skip_reason or "").startswith("execution is ending")
        stopped = current.status == st.FAILED and current.error == "cancelled"
        if ended or stopped:
            reset.add(sid)
    return reset


def _retry(state: ExecutionState, event: Event, data: StepRetryRequested) -> Changes:
    if data.step_id not in state.steps:
        return {}
    reset = reset_set(state, data.step_id)
    dropped = {sid for sid in state.steps if (p := parent_of(sid)) is not None and p[0] in reset}
    kept = {sid: s for sid, s in state.steps.items() if sid not in dropped}
    for sid in reset:
        old = kept[sid]
        kept[sid] = StepState(id=sid, attempt=old.attempt, retry_base=old.attempt)
    steps = StepMap(kept)
    order = tuple(sid for sid in state.order if sid not in dropped)
    deps = {sid: d for sid, d in state.deps.items() if sid not in dropped}

    def done(sid: str) -> bool:
        return steps[sid].status in st.FINISHED

    ready = frozenset(
        sid
        for sid, s in steps.items()
        if s.status == st.RETRY_WAIT or (s.status == st.PENDING and all(done(d) for d in deps[sid]))
    )
    active = frozenset(
        sid for sid, s in steps.items() if s.status in st.ACTIVE or s.rollback_status in st.ACTIVE
    )
    # The deadline restarts from now; timers the first run left unfired are void.
    timers = {tid: t for tid, t in state.timers.items() if tid != DEADLINE and t[1]}
    return dict(
        status=st.EXEC_RUNNING,
        steps=steps,
        order=order,
        position={sid: i for i, sid in enumerate(order)},
        deps=deps,
        dependants={sid: d for sid, d in state.dependants.items() if sid not in dropped},
        ready=ready,
        active=active,
        frontier=advanced_frontier(order, steps),
        finished=sum(1 for sid in steps if done(sid)),
        failure=None,
        kpis=None,
        reason=None,
        completed_at=None,
        timers=timers,
        retried_at=event.time,
    )


FLOW_HANDLERS: dict[EventType, Callable[[ExecutionState, Event, Any], Changes]] = {
    EventType.STEP_WAITING: _waiting,
    EventType.EVENT_RECEIVED: _received,
    EventType.STEP_RETRY_REQUESTED: _retry,
}
