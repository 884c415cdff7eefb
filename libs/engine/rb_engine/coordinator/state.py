"""The coordinator's view of one execution: a value folded from its events."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from rb_common.model import Runbook
from rb_common.payloads import StepScheduled
from rb_common.statuses import (
    ACTIVE_STEP,
    FINISHED_STEP,
    TERMINAL_EXECUTION,
    ExecutionStatus,
    StepStatus,
)
from rb_engine.coordinator.step_map import StepMap

if TYPE_CHECKING:
    from rb_engine.coordinator.approvals import Approval

T = TypeVar("T")


def updated(value: T, **changes: Any) -> T:
    """A copy of a frozen state dataclass with `changes`: what dataclasses.replace does, without
    re-running __init__ over every field for every event (the fold's hot path)."""
    new = object.__new__(type(value))
    new.__dict__.update(value.__dict__)
    new.__dict__.update(changes)
    return new


# Statuses: the shared enums (rb_common.statuses), under the short names the fold uses.
# Step statuses. ACTIVE ones hold a concurrency slot.
PENDING = StepStatus.PENDING
SCHEDULED = StepStatus.SCHEDULED
RUNNING = StepStatus.RUNNING
RETRY_WAIT = StepStatus.RETRY_WAIT
SUCCEEDED = StepStatus.SUCCEEDED
FAILED = StepStatus.FAILED
SKIPPED = StepStatus.SKIPPED
ACTIVE = ACTIVE_STEP
FINISHED = FINISHED_STEP

# Execution statuses (DESIGN.md section 4), plus NEW before execution.requested.
NEW = ExecutionStatus.NEW
QUEUED = ExecutionStatus.QUEUED
EXEC_RUNNING = ExecutionStatus.RUNNING
PAUSED = ExecutionStatus.PAUSED
WAITING_APPROVAL = ExecutionStatus.WAITING_APPROVAL
EXEC_SUCCEEDED = ExecutionStatus.SUCCEEDED
EXEC_FAILED = ExecutionStatus.FAILED
ABORTED = ExecutionStatus.ABORTED
CANCELLED = ExecutionStatus.CANCELLED
TERMINAL = TERMINAL_EXECUTION


@dataclass(frozen=True)
class StepState:
    id: str
    status: StepStatus = PENDING
    attempt: int = 0
    inputs: Any = None
    outputs: dict[str, Any] = field(default_factory=dict)
    result: Any = None
    error: str | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    retry_at: datetime | None = None
    skip_reason: str | None = None
    rollback_status: StepStatus | None = None
    rollback_error: str | None = None
    scheduled: StepScheduled | None = None  # the latest step.scheduled: what to run
    # Deliveries of the current attempt to workers, as far as they reported (a worker crash
    # makes JetStream deliver the same attempt again; events carry `delivery` when above 1).
    deliveries: int = 1
    # Attempts made before an operator's retry of a failed step (its retry policy counts anew).
    retry_base: int = 0


DEADLINE = "deadline"  # the timer of the runbook's `timeout`


@dataclass(frozen=True)
class Failure:
    """Why the execution is winding down: a step that failed with abort or rollback."""

    step_id: str
    mode: str  # abort | rollback
    error: str


@dataclass(frozen=True)
class ExecutionState:
    execution_id: str = ""
    status: ExecutionStatus = NEW
    runbook: Runbook | None = None
    params: dict[str, Any] = field(default_factory=dict)
    env: dict[str, Any] = field(default_factory=dict)
    trigger: dict[str, Any] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    concurrency: int = 8
    order: tuple[str, ...] = ()
    deps: dict[str, tuple[str, ...]] = field(default_factory=dict)
    dependants: dict[str, tuple[str, ...]] = field(default_factory=dict)
    position: dict[str, int] = field(default_factory=dict)
    # Derived indexes kept by evolve so decide need not scan every step on every event.
    ready: frozenset[str] = frozenset()  # PENDING with all deps finished, or RETRY_WAIT
    finished: int = 0
    active: frozenset[str] = frozenset()  # steps (or compensations) scheduled or running
    # The index in `order` before which every step is finished: where a wind-down looks for
    # the next step to skip or cancel, without walking the finished ones again.
    frontier: int = 0
    # Persistent (rb_engine.coordinator.step_map): a new state shares the steps it did not change.
    steps: StepMap = field(default_factory=StepMap)
    assumptions: dict[str, bool] = field(default_factory=dict)
    failure: Failure | None = None
    cancel_requested: bool = False
    held: bool = False  # QUEUED by the executor's admission (execution.queued) until dequeued
    # Timers started (by id): their fire time, and whether they have fired.
    timers: dict[str, tuple[datetime, bool]] = field(default_factory=dict)
    rollback_started: bool = False
    approvals: dict[str, Approval] = field(default_factory=dict)  # by step id (coordinator.approvals)
    kpis: dict[str, Any] | None = None
    timer_waits: bool = False  # `wait` steps run as timers here (execution.requested `waits`)
    skip_together: bool = False  # a wind-down records steps.skipped (execution.requested `wind_down`)
    retried_at: datetime | None = None  # the last operator retry: the runbook's timeout restarts
    reason: str | None = None
    requested_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    now: datetime | None = None
    seq: int = 0
    last_hash: str | None = None

    def __post_init__(self) -> None:
        # Built directly (tests, tools) with a plain dict of steps: kept as a StepMap. The fold
        # makes its states with `updated`, which does not come here.
        if not isinstance(self.steps, StepMap):
            object.__setattr__(self, "steps", StepMap(self.steps))

    @property
    def definition(self) -> Runbook:
        if self.runbook is None:
            raise RuntimeError("execution has not been requested")
        return self.runbook

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def active_count(self) -> int:
        return len(self.active)

    @property
    def timed_out(self) -> bool:
        """The runbook's timeout (the `deadline` timer) has fired."""
        deadline = self.timers.get(DEADLINE)
        return deadline is not None and deadline[1]

    def pending_timers(self) -> dict[str, datetime]:
        """Timers started and not fired yet, by id: what a driver must still fire."""
        return {tid: at for tid, (at, fired) in self.timers.items() if not fired}

    @property
    def all_finished(self) -> bool:
        return self.finished == len(self.steps)

    def duration(self) -> float:
        if self.started_at is None or self.now is None:
            return 0.0
        return (self.now - self.started_at).total_seconds()
