"""Retrying a failed step of a finished execution: when it is allowed. Pure.

The fold (rb_engine.coordinator.flow_fold) reopens the execution: the step, its transitive
dependants and what the failure's wind-down skipped or cancelled start over (attempt numbers go
on, so idempotency keys differ from the first run's); the other steps keep their outputs.
"""

from __future__ import annotations

from rb_engine.coordinator import state as st
from rb_engine.coordinator.flow import parent_of
from rb_engine.coordinator.state import ExecutionState


def refusal(state: ExecutionState, step_id: str) -> tuple[int, str] | None:
    """(HTTP status, why) when `step_id` of this execution cannot be retried; None if it can."""
    if state.status == st.NEW:
        return 404, f"execution {state.execution_id!r} not found"
    step = state.steps.get(step_id)
    if step is None or parent_of(step_id) is not None:
        return 404, f"execution {state.execution_id!r} has no step {step_id!r}"
    if state.status != st.EXEC_FAILED:
        return 409, f"only a FAILED execution can retry a step; this one is {state.status}"
    if step.status != st.FAILED:
        return 409, f"step {step_id!r} did not fail (it is {step.status})"
    if state.rollback_started:
        return 409, "this execution rolled back after the failure; start a new execution instead"
    return None
