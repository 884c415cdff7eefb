"""Sub-runbooks: what a `runbook` step asks of whoever runs it, and the rules every driver shares.

A `runbook` step starts a child execution and waits for its end. The step plugin
(`rb_engine.steps.sub_runbook`) does not know how: its context carries a `ChildRuns` port. The
in-process runner runs the child with another Runner in the same process
(`rb_engine.local_children`); the executor service publishes the child's TriggerRequest and
follows the child's stream (`rb_executor.service.children`).

The same for all of them:
- the child's execution id is derived from the parent attempt's idempotency key, so a repeated
  or redelivered attempt finds the same child instead of starting another;
- the child's `execution.requested` records `parent: {execution_id, step_id}` and `depth` (1 for
  the child of a top-level run) and its trigger is `{type: runbook, parent, depth, actor}`;
- the child is requested by whoever requested the parent (`runbook:<parent id>` when the
  parent's trigger names nobody);
- a child deeper than MAX_DEPTH (or the step's `max_depth`) is refused before anything starts;
- cancelling the parent's attempt cancels the child.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol

from rb_common.statuses import ExecutionStatus

MAX_DEPTH = 5
_CHILD_IDS = uuid.UUID("7f1f8a55-0c55-4bb0-9d7e-6a0e0c4d1e14")


@dataclass(frozen=True)
class ChildRequest:
    runbook_id: str
    params: dict[str, Any]
    execution_id: str
    parent_execution_id: str
    parent_step_id: str
    depth: int
    actor: str

    @property
    def parent(self) -> dict[str, str]:
        return {"execution_id": self.parent_execution_id, "step_id": self.parent_step_id}

    def trigger(self) -> dict[str, Any]:
        return {"type": "runbook", "parent": self.parent, "depth": self.depth, "actor": self.actor}


@dataclass(frozen=True)
class ChildOutcome:
    execution_id: str
    status: str  # an ExecutionStatus
    reason: str | None = None
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)  # by step id

    @property
    def succeeded(self) -> bool:
        return self.status == ExecutionStatus.SUCCEEDED


class ChildError(Exception):
    """The child could not be started (no such runbook, not APPROVED, bad params)."""


class ChildRuns(Protocol):
    async def run(self, request: ChildRequest) -> ChildOutcome:
        """Start the child (once, whatever the number of calls for one id) and wait for its end.
        Cancelled, it asks the child to cancel before it lets the cancellation through.
        ChildError when the child cannot start."""
        ...


def child_execution_id(idempotency_key: str) -> str:
    """The child of one attempt of a `runbook` step: the same id for every delivery of it."""
    return uuid.uuid5(_CHILD_IDS, idempotency_key).hex


def depth_of(trigger: dict[str, Any]) -> int:
    """An execution's depth from its trigger: 0 unless a `runbook` step started it."""
    if trigger.get("type") != "runbook":
        return 0
    depth = trigger.get("depth")
    return depth if isinstance(depth, int) and not isinstance(depth, bool) and depth > 0 else 0


def requester_of(trigger: dict[str, Any]) -> str | None:
    """Who asked for an execution, as its trigger says (API and manual runs, and children, which
    inherit their parent's requester: a child's approvals refuse the same person)."""
    actor = trigger.get("actor")
    return actor if isinstance(actor, str) and actor else None


def child_fields(trigger: dict[str, Any]) -> dict[str, Any]:
    """What a `runbook` step's task carries about its execution (StepTask.depth, .requester)."""
    return {"depth": depth_of(trigger), "requester": requester_of(trigger)}


def depth_cap(max_depth: Any) -> int:
    if isinstance(max_depth, int) and not isinstance(max_depth, bool) and max_depth > 0:
        return min(max_depth, MAX_DEPTH)
    return MAX_DEPTH


def depth_problem(parent_depth: int, max_depth: Any = None) -> str | None:
    """Why a child at parent_depth + 1 may not start (None: it may)."""
    depth, cap = parent_depth + 1, depth_cap(max_depth)
    if depth > cap:
        return f"sub-runbook depth {depth} exceeds the cap of {cap}"
    return None


def raw_result(runbook_id: str, outcome: ChildOutcome) -> dict[str, Any]:
    """The `runbook` step's raw result when its child succeeded."""
    return {
        "execution_id": outcome.execution_id,
        "runbook": runbook_id,
        "status": str(outcome.status),
        "outputs": outcome.outputs,
    }


def failure_message(runbook_id: str, outcome: ChildOutcome) -> str:
    reason = f": {outcome.reason}" if outcome.reason else ""
    return (
        f"child execution {outcome.execution_id} of {runbook_id} ended {str(outcome.status).lower()}{reason}"
    )
