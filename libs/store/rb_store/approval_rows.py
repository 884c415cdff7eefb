"""Approval steps -> rows of `approvals`, copied out of the folded state (like rb_store.projection).

An approval's status: `pending` while its step waits; then `approved`, `rejected`,
`timed_out` (its timer fired first, whatever its timeout_action did) or `cancelled` (the
execution ended otherwise). Pure: the recorder writes the rows.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from rb_common.statuses import StepStatus
from rb_engine.coordinator import ExecutionState, approvals
from rb_store.projection import Projection, utc

PENDING, APPROVED, REJECTED, TIMED_OUT, CANCELLED = (
    "pending",
    "approved",
    "rejected",
    "timed_out",
    "cancelled",
)
STATUSES = (PENDING, APPROVED, REJECTED, TIMED_OUT, CANCELLED)


def changed_approvals(before: Projection, after: Projection) -> list[str]:
    """Approval steps whose request, decisions or step changed with the last event."""
    old, new = before.state, after.state
    return [
        sid
        for sid, approval in new.approvals.items()
        if old.approvals.get(sid) is not approval or old.steps.get(sid) is not new.steps.get(sid)
    ]


def status_of(state: ExecutionState, step_id: str) -> str:
    approval = state.approvals[step_id]
    step = state.steps[step_id]
    if step.status == StepStatus.RUNNING:
        return PENDING
    timer = state.timers.get(approvals.timer_id(step_id))
    fired = timer is not None and timer[1]
    if approval.rejection is not None and step.status == StepStatus.FAILED and not _cancelled(step.error):
        return REJECTED
    if step.status == StepStatus.SUCCEEDED:
        return TIMED_OUT if isinstance(step.result, dict) and step.result.get("timed_out") else APPROVED
    if fired and not _cancelled(step.error):
        return TIMED_OUT
    return CANCELLED


def _cancelled(error: str | None) -> bool:
    return error == "cancelled"


def approval_rows(projection: Projection, step_ids: list[str]) -> list[dict[str, Any]]:
    state = projection.state
    rows = []
    for sid in step_ids:
        approval = state.approvals[sid]
        request = approval.request
        step = state.steps[sid]
        status = status_of(state, sid)
        rows.append(
            {
                "execution_id": state.execution_id,
                "step_id": sid,
                "approval_id": request.approval_id,
                "runbook_id": state.runbook.id if state.runbook is not None else None,
                "status": status,
                "approvers": list(request.approvers),
                "min_approvals": request.min_approvals,
                "prompt": request.prompt,
                "require_comment": request.require_comment,
                "timeout_action": request.timeout_action,
                "timeout_at": _timeout_at(approval.requested_at, request.timeout),
                "requested_by": request.requested_by,
                "requested_at": utc(approval.requested_at),
                "decided_at": utc(step.completed_at) if status != PENDING else None,
                "decisions": [
                    {
                        "actor": d.actor,
                        "decision": d.decision,
                        "comment": d.comment,
                        "via": d.via,
                        "at": at.isoformat(),
                    }
                    for d, at in zip(approval.decisions, approval.decided_at, strict=True)
                ],
            }
        )
    return rows


def _timeout_at(requested_at: datetime, timeout: float | None) -> datetime | None:
    if timeout is None:
        return None
    return utc(requested_at + timedelta(seconds=timeout))
