"""What a notification says, computed from the folded execution: pure, no I/O, secrets masked."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, fields, replace
from datetime import datetime
from typing import Any

from rb_common.events import Event
from rb_common.expressions import mentions_secrets
from rb_common.links import signed_url
from rb_common.model import NotifyEvent
from rb_common.payloads import ApprovalRequested, KpiEvaluated
from rb_common.secrets import mask
from rb_common.statuses import ExecutionStatus, StepStatus
from rb_engine.coordinator import ExecutionState

MAX_ERROR = 2000
HIDDEN = "[hidden: refers to secrets]"

HEADLINES: dict[str, str] = {
    "started": "started",
    "succeeded": "succeeded",
    "failed": "failed",
    "aborted": "was aborted",
    "cancelled": "was cancelled",
    "approval_requested": "is waiting for approval",
}

_BUILTIN_KPI_BOUNDS = {"duration_seconds": "≤", "success_rate": "≥", "error_rate": "≤"}
_ALERT_KINDS = {"alert", "alertmanager", "grafana", "pagerduty", "cloudevents", "webhook"}
_SCHEDULE_KINDS = {"cron", "schedule", "scheduler"}


@dataclass(frozen=True)
class KpiLine:
    name: str
    value: str
    target: str | None = None  # e.g. "≤ 300"
    ok: bool | None = None  # None: recorded, no target
    error: str | None = None


@dataclass(frozen=True)
class Approval:
    step_id: str
    description: str = ""
    approvers: list[str] | None = None
    min_approvals: int | None = None
    timeout: str | None = None
    message: str | None = None
    approval_id: str | None = None  # what the Approve / Reject buttons decide


@dataclass(frozen=True)
class Summary:
    execution_id: str
    event_id: str
    event_type: str
    trigger: NotifyEvent
    runbook_id: str
    runbook_name: str
    runbook_version: str
    environment: str
    status: str
    headline: str
    triggered_by: str
    event_time: datetime
    duration_seconds: float | None = None
    owner: str | None = None
    failed_step: str | None = None
    failed_step_attempts: int = 0
    error: str | None = None
    reason: str | None = None
    steps: str = ""  # "3 succeeded, 1 failed"
    kpis: list[KpiLine] | None = None
    kpis_breached: list[str] | None = None
    approval: Approval | None = None
    link: str | None = None

    @property
    def attention(self) -> bool:
        """Whether someone has to act or look: failures and approvals."""
        return self.trigger in ("failed", "aborted", "approval_requested")


def summarize(
    state: ExecutionState,
    event: Event,
    trigger: NotifyEvent,
    *,
    public_url: str | None = None,
    secrets: Iterable[str] = (),
    actor: str | None = None,
    link_key: bytes | None = None,
    link_ttl: float = 86_400.0,
) -> Summary:
    """The notification's content for `event`, from the execution folded up to and including it.
    The link opens the execution's page for people through a signed link that expires
    (rb_common.links); without a link key, the JSON API's URL (which needs an API key)."""
    runbook = state.definition
    status = ExecutionStatus.WAITING_APPROVAL if trigger == "approval_requested" else state.status
    failed_step, error, attempts = _failure(state, trigger)
    reason = state.reason if trigger in ("failed", "aborted", "cancelled") else None
    if reason and error and reason.endswith(error):
        reason = None  # "step 'x' failed: <error>" says nothing the failed step does not
    kpi_data = KpiEvaluated.model_validate(state.kpis or {})
    summary = Summary(
        execution_id=state.execution_id or event.execution_id,
        event_id=event.id,
        event_type=str(event.type),
        trigger=trigger,
        runbook_id=runbook.id,
        runbook_name=runbook.name,
        runbook_version=runbook.version,
        environment=runbook.environment,
        owner=runbook.owner,
        status=status,
        headline=f"{runbook.name} {HEADLINES[trigger]}",
        triggered_by=describe_trigger(state.trigger, actor),
        event_time=event.time,
        duration_seconds=_duration(state),
        failed_step=failed_step,
        failed_step_attempts=attempts,
        error=_clip(error),
        reason=_clip(reason),
        steps=_step_counts(state) if trigger != "started" else "",
        kpis=_kpi_lines(kpi_data.kpis) or None,
        kpis_breached=list(kpi_data.breached) or None,
        approval=_approval(state, event) if trigger == "approval_requested" else None,
        link=_link(public_url, event.execution_id, link_key, link_ttl),
    )
    return masked(summary, secrets)


def _link(public_url: str | None, execution_id: str, key: bytes | None, ttl: float) -> str | None:
    if not public_url:
        return None
    if key is None:
        return f"{public_url.rstrip('/')}/api/v1/executions/{execution_id}"
    return signed_url(public_url, execution_id, key, ttl)


def masked(summary: Summary, secrets: Iterable[str]) -> Summary:
    """Every text in the summary with each secret value replaced by ***."""
    values = [s for s in secrets if s]
    if not values:
        return summary
    changes: dict[str, Any] = {}
    for f in fields(summary):
        value = getattr(summary, f.name)
        if isinstance(value, str | list):
            changes[f.name] = mask(value, values)
    out = replace(summary, **changes)
    if out.kpis:
        out = replace(out, kpis=[_mask_dc(k, values) for k in out.kpis])
    if out.approval:
        out = replace(out, approval=_mask_dc(out.approval, values))
    return out


def _mask_dc(obj: Any, secrets: list[str]) -> Any:
    return replace(obj, **{f.name: mask(getattr(obj, f.name), secrets) for f in fields(obj)})


def describe_trigger(trigger: dict[str, Any], actor: str | None = None) -> str:
    """Who or what started the execution: an alert, a schedule or a person."""
    trigger = trigger or {}
    kind = str(trigger.get("type") or trigger.get("kind") or "").lower()
    raw_alert = trigger.get("alert")
    alert: dict[str, Any] = raw_alert if isinstance(raw_alert, dict) else {}
    labels = trigger.get("labels") or alert.get("labels")
    labels = labels if isinstance(labels, dict) else {}
    alertname = trigger.get("alertname") or alert.get("alertname") or labels.get("alertname")
    if alertname or kind in _ALERT_KINDS:
        source = trigger.get("source") or alert.get("source") or (kind if kind != "alert" else "")
        name = alertname or trigger.get("title") or trigger.get("name") or "(unnamed)"
        return f"alert {name}" + (f" ({source})" if source else "")
    cron = trigger.get("cron") or trigger.get("schedule")
    if cron or kind in _SCHEDULE_KINDS:
        text = f"schedule {cron}" if cron else "schedule"
        fired = trigger.get("fire_time") or trigger.get("scheduled_at")
        return text + (f" (fired {fired})" if fired else "")
    who = trigger.get("actor") or trigger.get("user") or actor
    if who:
        return f"{who}" + (f" via {kind}" if kind else "")
    return kind or "unknown"


def _failure(state: ExecutionState, trigger: str) -> tuple[str | None, str | None, int]:
    if trigger not in ("failed", "aborted", "cancelled"):
        return None, None, 0
    step_id = state.failure.step_id if state.failure else None
    if step_id is None:
        step_id = next((sid for sid in state.order if state.steps[sid].status == StepStatus.FAILED), None)
    if step_id is None:
        return None, None, 0
    step = state.steps[step_id]
    error = step.error or (state.failure.error if state.failure else None)
    return step_id, error, step.attempt


def _duration(state: ExecutionState) -> float | None:
    if state.started_at is None:
        return None
    end = state.completed_at or state.now
    return max(0.0, (end - state.started_at).total_seconds()) if end else None


def _step_counts(state: ExecutionState) -> str:
    counts = Counter(s.status.lower() for s in state.steps.values())
    order = ["succeeded", "failed", "skipped", "running", "scheduled", "retry_wait", "pending"]
    return ", ".join(f"{counts[k]} {k.replace('_', ' ')}" for k in order if counts.get(k))


def _kpi_lines(kpis: dict[str, dict[str, Any]]) -> list[KpiLine]:
    lines = []
    for name, kpi in kpis.items():
        if not isinstance(kpi, dict):
            continue
        target = kpi.get("target")
        if name in _BUILTIN_KPI_BOUNDS and target is None:
            continue  # a built-in without a target is noise (duration is shown on its own)
        bound = _BUILTIN_KPI_BOUNDS.get(name, "")
        lines.append(
            KpiLine(
                name=name,
                value=format_value(kpi.get("value")),
                target=f"{bound} {format_value(target)}".strip() if target is not None else None,
                # Without a target there is nothing to meet: recorded, unless it could not be computed.
                ok=kpi.get("ok") if target is not None or kpi.get("error") else None,
                error=kpi.get("error"),
            )
        )
    return lines


def _approval(state: ExecutionState, event: Event) -> Approval:
    data = event.payload_as(ApprovalRequested)
    step_id = data.step_id
    description = ""
    if state.runbook is not None:
        with contextlib.suppress(KeyError):
            description = state.runbook.step(step_id).description
    return Approval(
        step_id=step_id,
        description=_safe(description) or "",
        approvers=[_safe(str(a)) for a in data.approvers] if data.approvers is not None else None,
        min_approvals=data.min_approvals,
        timeout=format_value(data.timeout) if data.timeout is not None else None,
        message=_safe(data.prompt) if data.prompt else None,
        approval_id=data.approval_id,
    )


def _safe(text: str) -> str:
    """Text that still holds an unresolved `${secrets...}` reference is not shown at all."""
    return HIDDEN if mentions_secrets(text) else text


def _clip(text: str | None, limit: int = MAX_ERROR) -> str | None:
    if text is None:
        return None
    return text if len(text) <= limit else text[: limit - 1] + "…"


def format_value(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{seconds:.0f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"
