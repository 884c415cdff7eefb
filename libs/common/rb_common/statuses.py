"""Execution and step statuses: one vocabulary for the coordinator's fold, the recorder's
projection, the notifier and the API. StrEnums, so a status is also its own string: it compares
equal to, hashes like and serialises as the plain value ("RUNNING")."""

from __future__ import annotations

from enum import StrEnum


class ExecutionStatus(StrEnum):
    """QUEUED -> RUNNING <-> PAUSED -> SUCCEEDED | FAILED | ABORTED | CANCELLED; NEW before the
    first event (never stored). WAITING_APPROVAL: RUNNING while an approval step waits for
    people (rb_engine.coordinator.approvals); a pause makes it PAUSED, resuming returns to it."""

    NEW = "NEW"
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    WAITING_APPROVAL = "WAITING_APPROVAL"
    PAUSED = "PAUSED"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    ABORTED = "ABORTED"
    CANCELLED = "CANCELLED"


class StepStatus(StrEnum):
    """A step's status; a step's compensation (`rollback_status`) uses the same values."""

    PENDING = "PENDING"
    SCHEDULED = "SCHEDULED"
    RUNNING = "RUNNING"
    RETRY_WAIT = "RETRY_WAIT"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"


TERMINAL_EXECUTION = frozenset(
    {ExecutionStatus.SUCCEEDED, ExecutionStatus.FAILED, ExecutionStatus.ABORTED, ExecutionStatus.CANCELLED}
)
# What the API lists and filters on: every status an execution can be stored with (not NEW).
STORED_EXECUTION = tuple(s for s in ExecutionStatus if s is not ExecutionStatus.NEW)
# Steps that hold a concurrency slot, and steps that are done.
ACTIVE_STEP = frozenset({StepStatus.SCHEDULED, StepStatus.RUNNING})
FINISHED_STEP = frozenset({StepStatus.SUCCEEDED, StepStatus.FAILED, StepStatus.SKIPPED})
