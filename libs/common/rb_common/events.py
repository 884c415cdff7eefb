"""The event schema shared by every service (DESIGN.md section 5)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from rb_common.canonical import digest

SCHEMA_VERSION = 1


class EventType(StrEnum):
    EXECUTION_REQUESTED = "execution.requested"
    EXECUTION_STARTED = "execution.started"
    ASSUMPTION_CHECKED = "assumption.checked"
    STEP_SCHEDULED = "step.scheduled"
    STEP_STARTED = "step.started"
    STEP_SUCCEEDED = "step.succeeded"
    STEP_FAILED = "step.failed"
    STEP_SKIPPED = "step.skipped"
    APPROVAL_REQUESTED = "approval.requested"
    APPROVAL_DECIDED = "approval.decided"
    EXECUTION_PAUSED = "execution.paused"
    EXECUTION_RESUMED = "execution.resumed"
    EXECUTION_CANCEL_REQUESTED = "execution.cancel_requested"
    ROLLBACK_STARTED = "rollback.started"
    KPI_EVALUATED = "kpi.evaluated"
    NOTIFICATION_SENT = "notification.sent"
    NOTIFICATION_FAILED = "notification.failed"
    EXECUTION_SUCCEEDED = "execution.succeeded"
    EXECUTION_FAILED = "execution.failed"
    EXECUTION_ABORTED = "execution.aborted"
    EXECUTION_CANCELLED = "execution.cancelled"


TERMINAL_EVENTS = frozenset(
    {
        EventType.EXECUTION_SUCCEEDED,
        EventType.EXECUTION_FAILED,
        EventType.EXECUTION_ABORTED,
        EventType.EXECUTION_CANCELLED,
    }
)

# Events the coordinator decides; everything else is a fact reported from outside it.
DECIDED_EVENTS = frozenset(
    {
        EventType.EXECUTION_STARTED,
        EventType.ASSUMPTION_CHECKED,
        EventType.STEP_SCHEDULED,
        EventType.STEP_SKIPPED,
        EventType.ROLLBACK_STARTED,
        EventType.KPI_EVALUATED,
        *TERMINAL_EVENTS,
    }
)


class Event(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    execution_id: str
    seq: int = Field(ge=1)
    type: EventType
    time: datetime
    actor: str = "rb"
    data: dict[str, Any] = {}
    schema_version: int = SCHEMA_VERSION
    # Hash chain for tamper evidence: each event names its predecessor's hash.
    prev_hash: str | None = None
    hash: str | None = None

    @classmethod
    def sealed(cls, *, prev_hash: str | None, **fields: Any) -> Event:
        """A new event whose hash covers every field, including the link to its predecessor."""
        event = cls(prev_hash=prev_hash, **fields)
        # The hash is set on the event just built (never on one already shared): no second
        # validation or copy on the hot path.
        event.__dict__["hash"] = event.computed_hash()
        return event

    def computed_hash(self) -> str:
        return digest(self.model_dump(mode="json", exclude={"hash"}))

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str | bytes) -> Event:
        return cls.model_validate_json(text)
