"""The names an expression sees, built from the execution state."""

from __future__ import annotations

from typing import Any

from rb_engine.coordinator.state import ExecutionState


def expression_context(state: ExecutionState, secrets: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "params": state.params,
        "env": state.env,
        "trigger": state.trigger,
        "secrets": secrets or {},
        "execution": {
            "id": state.execution_id,
            "started_at": state.started_at.isoformat() if state.started_at else None,
            "duration": state.duration(),
        },
        "steps": {
            sid: {"outputs": s.outputs, "status": s.status.lower(), "error": s.error}
            for sid, s in state.steps.items()
            if "[" not in sid  # a for_each iteration: read through its loop's outputs
        },
    }


def evaluate_in(state: ExecutionState, expression: str, secrets: dict[str, Any] | None = None) -> Any:
    """Evaluate `expression` (with or without `${}`) against the execution as it stands."""
    from rb_common.expressions import render

    text = expression if "${" in expression else "${" + expression + "}"
    return render(text, expression_context(state, secrets))
