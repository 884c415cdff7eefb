"""Outside events for `wait_for_event` steps: which become `event.received`. Pure.

The executor service offers live ones (POST /api/v1/events, `<ns>.events.<subject>`) to
`received`; in-process runs take them from a fixture's `events: {step id: data}`, each
delivered as soon as its step waits (`scripted_events`).
"""

from __future__ import annotations

from typing import Any

from rb_common.events import EventType
from rb_common.payloads import EventReceived
from rb_engine.coordinator import state as st
from rb_engine.coordinator.applier import EXECUTOR, Fact
from rb_engine.coordinator.flow import waiting_for
from rb_engine.coordinator.state import ExecutionState


def received(
    state: ExecutionState, subject: str, correlation: Any, data: Any, event_id: str | None
) -> list[Fact]:
    """An outside event: news for each `wait_for_event` step waiting on this subject and
    correlation (rb_engine.coordinator.flow.waiting_for); other correlations are ignored."""
    facts = []
    for step_id, attempt in waiting_for(state, subject, correlation):
        payload = EventReceived(
            step_id=step_id,
            attempt=attempt,
            subject=subject,
            correlation=correlation,
            data=data,
            event_id=event_id,
        )
        facts.append(Fact(EventType.EVENT_RECEIVED, payload.dump(), EXECUTOR, payload))
    return facts


def scripted_events(state: ExecutionState, events: dict[str, Any]) -> list[Fact]:
    """The `event.received` facts for the waiting steps a fixture scripted an event for."""
    facts: list[Fact] = []
    for step_id, data in events.items():
        step = state.steps.get(step_id)
        if step is None or step.status != st.RUNNING or step.result is not None:
            continue
        inputs = step.inputs if isinstance(step.inputs, dict) else {}
        subject = inputs.get("subject")
        if not isinstance(subject, str):
            continue
        for fact in received(state, subject, inputs.get("correlation"), data, f"fixture:{step_id}"):
            if fact.data["step_id"] == step_id:
                facts.append(fact)
    return facts


def waiting_for_outside(state: ExecutionState) -> str | None:
    """The first step that waits for an outside event (nothing else would move it), or None."""
    for sid in sorted(state.active, key=lambda s: state.position.get(s, 0)):
        step = state.steps[sid]
        idle = step.status == st.RUNNING and step.scheduled is None and step.result is None
        if idle and state.definition.step(sid).type == "wait_for_event":
            return sid
    return None
