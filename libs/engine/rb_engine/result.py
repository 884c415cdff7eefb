"""The canonical result of an execution: statuses, outputs, KPIs; no ids, no times."""

from __future__ import annotations

from typing import Any

from rb_common.canonical import canonical_json
from rb_common.statuses import StepStatus
from rb_engine.coordinator.state import ExecutionState

# Wall-clock KPIs differ run to run; their targets and verdicts are kept, their values are not.
_TIMING_KPIS = frozenset({"duration_seconds"})


def canonical_result(state: ExecutionState) -> dict[str, Any]:
    rb = state.definition
    steps: dict[str, Any] = {}
    for sid in state.order:
        s = state.steps[sid]
        # Plain strings, not the StrEnum members: the result is also written as YAML (fixtures).
        entry: dict[str, Any] = {"status": str(s.status), "attempts": s.attempt, "outputs": s.outputs}
        if s.error and s.status != StepStatus.SUCCEEDED:
            entry["error"] = s.error
        if s.skip_reason:
            entry["skip_reason"] = s.skip_reason
        if s.rollback_status:
            entry["rollback"] = str(s.rollback_status)
        if s.rollback_error:
            entry["rollback_error"] = s.rollback_error
        steps[sid] = entry
    kpis = {}
    for name, kpi in ((state.kpis or {}).get("kpis") or {}).items():
        kpis[name] = {k: v for k, v in kpi.items() if not (name in _TIMING_KPIS and k == "value")}
    return {
        "runbook": {"id": rb.id, "version": rb.version},
        "status": str(state.status),
        "reason": state.reason,
        "assumptions": dict(sorted(state.assumptions.items())),
        "steps": steps,
        "kpis": kpis,
    }


def canonical_result_json(state: ExecutionState) -> str:
    return canonical_json(canonical_result(state), indent=2) + "\n"
