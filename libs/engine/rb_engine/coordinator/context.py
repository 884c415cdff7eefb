"""The names an expression sees, built from the execution state."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rb_common.errors import ExpressionError
from rb_common.expressions import expressions_in, references
from rb_engine.coordinator.state import ExecutionState


def expression_context(
    state: ExecutionState, secrets: dict[str, Any] | None = None, steps: Iterable[str] | None = None
) -> dict[str, Any]:
    """The names expressions see. With `steps` (ids of steps of this execution, see
    `steps_read`), `steps` holds only those: what an expression that reads no other step gets
    from the full context, without building an entry for each of thousands of steps."""
    wanted = state.steps if steps is None else steps
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
            for sid in wanted
            if "[" not in sid  # a for_each iteration: read through its loop's outputs
            for s in (state.steps[sid],)
        },
    }


def steps_read(state: ExecutionState, value: Any, *, expression: bool = False) -> frozenset[str] | None:
    """The steps the expressions in `value` read, when each names its steps outright
    (`steps.x...`, `steps["x"]...`) and every one of them is a step of this execution; None when
    an expression may read any step (`steps` itself, `steps[name]`) or names one it lacks (its
    error message lists the steps there are): such an expression needs the full context.
    With `expression`, a string without `${}` is one expression (a step's `when`)."""
    read: set[str] = set()
    bare = expression and isinstance(value, str) and "${" not in value  # a `when` as written
    try:
        for body in [value] if bare else expressions_in(value):
            for path in references(body):
                if path[0] != "steps":
                    continue
                if len(path) < 2 or path[1] not in state.steps or "[" in path[1]:
                    return None
                read.add(path[1])
    except ExpressionError:
        return None  # evaluating it fails the same way with any context
    return frozenset(read)


def evaluate_in(state: ExecutionState, expression: str, secrets: dict[str, Any] | None = None) -> Any:
    """Evaluate `expression` (with or without `${}`) against the execution as it stands."""
    from rb_common.expressions import render

    text = expression if "${" in expression else "${" + expression + "}"
    return render(text, expression_context(state, secrets))
