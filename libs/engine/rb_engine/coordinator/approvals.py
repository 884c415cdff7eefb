"""The `approval` step, in the kernel: people decide, the coordinator counts.

One event type each way and one decide rule:

- When an approval step is ready, decide emits `approval.requested` (instead of scheduling a
  task: no worker ever runs it). The fold marks the step RUNNING and the execution
  WAITING_APPROVAL while any approval is pending. With a `timeout`, a timer follows
  (`approval:<step id>`).
- People's decisions arrive as facts, `approval.decided` (from the API, Slack, email or a
  fixture), accepted by `decided()` only while the approval is pending, once per actor, and
  never from the execution's requester.
- `resolve()` turns the decisions into the step's outcome: a rejection fails it (its
  `on_failure` applies), `min_approvals` distinct approvals succeed it, a fired timer applies
  `timeout_action` (fail | approve | skip). These step events are decisions: they carry
  `approval_id`, and replay checks them against decide() like every other decision.

Pure: no I/O, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from rb_common.canonical import digest
from rb_common.durations import parse_duration
from rb_common.events import Event, EventType
from rb_common.model import Step
from rb_common.outputs import OutputError, extract_outputs
from rb_common.payloads import ApprovalDecided, ApprovalRequested, StepFailed, StepSkipped, StepSucceeded
from rb_engine.coordinator import evolve as fold
from rb_engine.coordinator import state as st
from rb_engine.coordinator.commands import Command, Emit, StartTimer
from rb_engine.coordinator.state import ExecutionState

STEP_TYPE = "approval"
APPROVE, REJECT = "approve", "reject"
TIMEOUT_ACTIONS = ("fail", "approve", "skip")

Changes = dict[str, Any]


@dataclass(frozen=True)
class Approval:
    """One approval step's request and the decisions taken on it so far (one per actor)."""

    request: ApprovalRequested
    requested_at: datetime
    decisions: tuple[ApprovalDecided, ...] = ()
    decided_at: tuple[datetime, ...] = ()  # each decision's event time

    def decided_by(self, actor: str) -> bool:
        return any(d.actor == actor for d in self.decisions)

    @property
    def approvers(self) -> list[str]:
        return [d.actor for d in self.decisions if d.decision == APPROVE]

    @property
    def rejection(self) -> ApprovalDecided | None:
        return next((d for d in self.decisions if d.decision == REJECT), None)


def approval_id(execution_id: str, step_id: str, attempt: int = 1) -> str:
    """`<execution>:<step>` for a step's first request; a retried approval step asks again
    under `<execution>:<step>:<attempt>`, so a decision (a Slack button, an email link) made on
    an earlier request never counts toward a later one."""
    return f"{execution_id}:{step_id}" if attempt <= 1 else f"{execution_id}:{step_id}:{attempt}"


def timer_id(step_id: str) -> str:
    return f"approval:{step_id}"


def request(state: ExecutionState, step: Step, inputs: Any) -> Emit:
    """The decision for a ready approval step: ask for it (its inputs rendered)."""
    inputs = inputs if isinstance(inputs, dict) else {}
    timeout = inputs.get("timeout")
    seconds = parse_duration(timeout) if timeout is not None else None
    requester = state.trigger.get("actor")
    return Emit(
        ApprovalRequested(
            step_id=step.id,
            approval_id=approval_id(state.execution_id, step.id, state.steps[step.id].attempt + 1),
            approvers=[str(a) for a in inputs.get("approvers") or []],
            min_approvals=int(inputs.get("min_approvals") or 1),
            prompt=inputs.get("prompt"),
            require_comment=bool(inputs.get("require_comment", False)),
            timeout=seconds,
            timeout_action=str(inputs.get("timeout_action") or "fail"),
            requested_by=str(requester) if requester else None,
        )
    )


# -- the fold -----------------------------------------------------------------------------------


def on_requested(state: ExecutionState, event: Event, data: ApprovalRequested) -> Changes:
    sid = data.step_id
    if sid not in state.steps or state.steps[sid].status != st.PENDING:
        return {}
    attempt = state.steps[sid].attempt + 1
    changes = fold._step(state, sid, status=st.RUNNING, attempt=attempt, inputs=data.dump(), started_at=event.time)
    changes["approvals"] = {**state.approvals, sid: Approval(data, event.time)}
    return changes


def on_decided(state: ExecutionState, event: Event, data: ApprovalDecided) -> Changes:
    current = state.approvals.get(data.step_id)
    if current is None or current.decided_by(data.actor):
        return {}
    updated = Approval(
        current.request,
        current.requested_at,
        (*current.decisions, data),
        (*current.decided_at, event.time),
    )
    return {"approvals": {**state.approvals, data.step_id: updated}}


def pending(state: ExecutionState) -> list[str]:
    """Approval steps still waiting for people."""
    return [sid for sid in state.approvals if state.steps[sid].status == st.RUNNING]


def settle(state: ExecutionState) -> ExecutionState:
    """The execution's status while approvals are pending: WAITING_APPROVAL, RUNNING again
    once none is (PAUSED and the end statuses stay as they are)."""
    if state.status not in (st.EXEC_RUNNING, st.WAITING_APPROVAL):
        return state
    status = st.WAITING_APPROVAL if pending(state) else st.EXEC_RUNNING
    return state if status == state.status else st.updated(state, status=status)


# -- facts from outside -------------------------------------------------------------------------


def decided(state: ExecutionState, data: dict[str, Any], actor: str) -> list[Any]:
    """A person's decision: news only while the approval is pending, once per actor, and not
    from the execution's requester. Returns applier Facts."""
    from rb_engine.coordinator.applier import Fact  # the applier imports this module

    try:
        decision = ApprovalDecided.model_validate(data)
    except ValidationError:
        return []
    current = state.approvals.get(decision.step_id)
    if (
        state.terminal
        or current is None
        or state.steps[decision.step_id].status != st.RUNNING
        or decision.approval_id != current.request.approval_id
        or decision.decision not in (APPROVE, REJECT)
        or current.decided_by(decision.actor)
        or decision.actor == current.request.requested_by
    ):
        return []
    return [Fact(EventType.APPROVAL_DECIDED, decision.dump(), actor, decision)]


# -- decide -----------------------------------------------------------------------------------


def resolve(state: ExecutionState) -> list[Command]:
    """Pending approvals' timers to start, and the outcomes their decisions (or their timeout)
    lead to. Runs also while paused: a decision is a running step finishing."""
    commands: list[Command] = []
    for sid in pending(state):
        current = state.approvals[sid]
        request = current.request
        rejection = current.rejection
        approvers = current.approvers
        timer = state.timers.get(timer_id(sid))
        if rejection is not None:
            why = f"rejected by {rejection.actor}" + (f": {rejection.comment}" if rejection.comment else "")
            commands.append(Emit(_failed(request, why)))
        elif len(approvers) >= request.min_approvals:
            commands.append(Emit(_succeeded(state, current, timed_out=False)))
        elif timer is not None and timer[1]:
            why = f"approval timed out after {request.timeout or 0:g}s"
            if request.timeout_action == "approve":
                commands.append(Emit(_succeeded(state, current, timed_out=True)))
            elif request.timeout_action == "skip":
                commands.append(Emit(StepSkipped(step_id=sid, reason=why)))
            else:
                commands.append(Emit(_failed(request, why, timed_out=True)))
        elif timer is None and request.timeout is not None:
            fire_at = current.requested_at + timedelta(seconds=request.timeout)
            commands.append(StartTimer(timer_id(sid), fire_at, f"approval of step '{sid}'"))
    return commands


def _result(current: Approval, timed_out: bool) -> dict[str, Any]:
    chosen = [d for d in current.decisions if d.decision == APPROVE]
    return {
        "approval_id": current.request.approval_id,
        "decision": "approved",
        "approved_by": [d.actor for d in chosen],
        "comments": [{"actor": d.actor, "comment": d.comment} for d in chosen if d.comment],
        "timed_out": timed_out,
    }


def _succeeded(state: ExecutionState, current: Approval, *, timed_out: bool) -> StepSucceeded:
    request = current.request
    result = _result(current, timed_out)
    specs = state.definition.step(request.step_id).outputs
    try:
        outputs = extract_outputs(specs, result) if specs else dict(result)
    except OutputError as exc:
        outputs = {"error": str(exc)}
    return StepSucceeded(
        step_id=request.step_id,
        attempt=1,
        phase="main",
        result=result,
        outputs=outputs,
        digest=digest(result),
        **_decided_by(request),
    )


def _failed(request: ApprovalRequested, why: str, *, timed_out: bool = False) -> StepFailed:
    extra: dict[str, Any] = {"timed_out": True} if timed_out else {}
    return StepFailed(
        step_id=request.step_id,
        attempt=1,
        phase="main",
        error=why,
        retryable=False,
        will_retry=False,
        retry_delay=0.0,
        **extra,
        **_decided_by(request),
    )


def _decided_by(request: ApprovalRequested) -> dict[str, Any]:
    """The extra key that marks a step outcome as the coordinator's decision (not a worker's)."""
    return {"approval_id": request.approval_id}


def is_decided_outcome(event: Event) -> bool:
    """A step outcome the coordinator decided for an approval (replay checks it as a decision)."""
    return event.type in (EventType.STEP_SUCCEEDED, EventType.STEP_FAILED) and "approval_id" in event.data
