"""KPIs evaluated at the end of an execution and recorded in kpi.evaluated."""

from __future__ import annotations

from typing import Any

from rb_common.errors import ExpressionError
from rb_common.expressions import render
from rb_common.payloads import KpiEvaluated
from rb_engine.coordinator.context import expression_context
from rb_engine.coordinator.state import FAILED, SUCCEEDED, ExecutionState


def evaluate_kpis(state: ExecutionState) -> KpiEvaluated:
    kpis = state.definition.kpis
    succeeded = sum(1 for s in state.steps.values() if s.status == SUCCEEDED)
    failed = sum(1 for s in state.steps.values() if s.status == FAILED)
    executed = succeeded + failed
    success_rate = succeeded / executed if executed else 1.0
    duration = state.duration()
    results: dict[str, Any] = {
        "duration_seconds": {
            "value": duration,
            "target": kpis.max_duration_seconds,
            "ok": _le(duration, kpis.max_duration_seconds),
        },
        "success_rate": {
            "value": round(success_rate, 6),
            "target": kpis.min_success_rate,
            "ok": _ge(success_rate, kpis.min_success_rate),
        },
        "error_rate": {
            "value": round(1 - success_rate, 6),
            "target": kpis.max_error_rate,
            "ok": _le(1 - success_rate, kpis.max_error_rate),
        },
    }
    custom = kpis.custom
    context = expression_context(state) if custom else {}  # O(steps): only when a KPI reads it
    for name, spec in custom.items():
        try:
            results[name] = {"value": render(spec, context), "target": None, "ok": True}
        except ExpressionError as exc:
            results[name] = {"value": None, "target": None, "ok": False, "error": str(exc)}
    breached = sorted(name for name, r in results.items() if r["ok"] is False)
    return KpiEvaluated(kpis=results, breached=breached)


def _le(value: float, target: float | None) -> bool | None:
    return None if target is None else value <= target


def _ge(value: float, target: float | None) -> bool | None:
    return None if target is None else value >= target
