"""The pure coordinator: evolve(state, event) folds history, decide(state) says what is next."""

from rb_engine.coordinator import approvals
from rb_engine.coordinator.commands import CancelStep, Command, Emit, RunStep
from rb_engine.coordinator.decide import decide, idempotency_key, retry_plan
from rb_engine.coordinator.evolve import evolve, fold
from rb_engine.coordinator.state import ExecutionState, StepState

__all__ = [
    "CancelStep",
    "Command",
    "Emit",
    "ExecutionState",
    "RunStep",
    "StepState",
    "approvals",
    "decide",
    "evolve",
    "fold",
    "idempotency_key",
    "retry_plan",
]
