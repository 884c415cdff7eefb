"""The event schema shared by every service (DESIGN.md section 5)."""

from __future__ import annotations

import builtins
import hashlib
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import to_jsonable_python

from rb_common.canonical import digest, plain_canonical_bytes

if TYPE_CHECKING:
    from rb_common.payloads import EventPayload

# The version of the data shapes (rb_common.payloads); older events are upcast when read
# (rb_common.upcast).
SCHEMA_VERSION = 1

P = TypeVar("P", bound="EventPayload")


class EventType(StrEnum):
    EXECUTION_REQUESTED = "execution.requested"
    EXECUTION_STARTED = "execution.started"
    # Admission (the executor): over a limit the run waits QUEUED until a slot frees.
    EXECUTION_QUEUED = "execution.queued"
    EXECUTION_DEQUEUED = "execution.dequeued"
    ASSUMPTION_CHECKED = "assumption.checked"
    STEP_SCHEDULED = "step.scheduled"
    STEP_STARTED = "step.started"
    STEP_SUCCEEDED = "step.succeeded"
    STEP_FAILED = "step.failed"
    STEP_SKIPPED = "step.skipped"
    STEPS_SKIPPED = "steps.skipped"  # a wind-down's pending steps, all at once
    APPROVAL_REQUESTED = "approval.requested"
    APPROVAL_DECIDED = "approval.decided"
    EXECUTION_PAUSED = "execution.paused"
    EXECUTION_RESUMED = "execution.resumed"
    EXECUTION_CANCEL_REQUESTED = "execution.cancel_requested"
    ROLLBACK_STARTED = "rollback.started"
    KPI_EVALUATED = "kpi.evaluated"
    NOTIFICATION_SENDING = "notification.sending"
    NOTIFICATION_RETRYING = "notification.retrying"
    NOTIFICATION_SENT = "notification.sent"
    NOTIFICATION_FAILED = "notification.failed"
    EXECUTION_SUCCEEDED = "execution.succeeded"
    EXECUTION_FAILED = "execution.failed"
    EXECUTION_ABORTED = "execution.aborted"
    EXECUTION_CANCELLED = "execution.cancelled"
    TIMER_STARTED = "timer.started"
    TIMER_FIRED = "timer.fired"
    # Flow control (branch, for_each, wait, wait_for_event) and retrying a failed step.
    STEP_WAITING = "step.waiting"
    EVENT_RECEIVED = "event.received"
    STEP_RETRY_REQUESTED = "step.retry_requested"


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
        EventType.STEPS_SKIPPED,
        EventType.ROLLBACK_STARTED,
        EventType.TIMER_STARTED,
        EventType.KPI_EVALUATED,
        *TERMINAL_EVENTS,
        EventType.APPROVAL_REQUESTED,
        EventType.STEP_WAITING,
    }
)


class Event(BaseModel):
    """The envelope. `data` is the payload as recorded (a plain dict on the wire, covered by the
    hash); `payload` is its typed view (rb_common.payloads)."""

    model_config = ConfigDict(frozen=True)
    # Not a field (never serialised, dropped by model_copy): (data, its typed payload), cached.
    __slots__ = ("_typed",)

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
    def sealed(cls, *, prev_hash: str | None, payload: EventPayload | None = None, **fields: Any) -> Event:
        """A new event whose hash covers every field, including the link to its predecessor.
        Given a typed `payload`, the data is its dump and the payload is the event's own (the
        fold does not parse it again)."""
        if payload is not None:
            fields["data"] = payload.dump()
        event = cls(prev_hash=prev_hash, **fields)
        if payload is not None:
            event.with_payload(payload)
        # The hash is set on the event just built (never on one already shared): no second
        # validation or copy on the hot path.
        event.__dict__["hash"] = event.computed_hash()
        return event

    @property
    def payload(self) -> EventPayload:
        """The typed data (rb_common.payloads), in the current schema version: parsed on first
        use and cached for as long as `data` is the same object."""
        try:
            data, typed = _TYPED.__get__(self, Event)  # the slot itself: no __getattr__ on a miss
            if data is self.data:
                return typed
        except AttributeError:
            pass
        from rb_common.payloads import parse_payload

        data = self.data
        if self.schema_version < SCHEMA_VERSION:
            from rb_common.upcast import upcast_data

            data = upcast_data(self.type, self.schema_version, data)
        typed = parse_payload(self.type, data)
        object.__setattr__(self, "_typed", (self.data, typed))
        return typed

    def with_payload(self, payload: EventPayload) -> Event:
        """This event, told that `payload` is the typed view of its data (the producer's own
        model, whose dump the data is): the fold will not parse it again."""
        object.__setattr__(self, "_typed", (self.data, payload))
        return self

    def payload_as(self, model: builtins.type[P]) -> P:
        """The typed data, known to be a `model` (TypeError if this event is another type)."""
        typed = self.payload
        if not isinstance(typed, model):
            raise TypeError(f"event {self.seq} is {self.type.value}, not {model.__name__}")
        return typed

    def computed_hash(self) -> str:
        """sha256 of the canonical JSON of every field but `hash`, as pydantic's JSON-mode dump
        writes them. Data of plain JSON values (all that rb writes) is hashed as it is, without
        the dump (the same bytes: tests/unit/common/test_event_hash.py); anything else is
        dumped first."""
        try:
            body = plain_canonical_bytes(
                {
                    "id": self.id,
                    "execution_id": self.execution_id,
                    "seq": self.seq,
                    "type": self.type.value,
                    "time": to_jsonable_python(self.time),
                    "actor": self.actor,
                    "data": self.data,
                    "schema_version": self.schema_version,
                    "prev_hash": self.prev_hash,
                }
            )
        except TypeError:
            return digest(self.model_dump(mode="json", exclude={"hash"}))
        return "sha256:" + hashlib.sha256(body).hexdigest()

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str | bytes) -> Event:
        return cls.model_validate_json(text)


_TYPED = Event.__dict__["_typed"]


class UpcastEvent(Event):
    """An event read in a newer schema version than it was recorded in (rb_common.upcast).
    Its content is the upcast one; its hash, and what `computed_hash` covers, stay the recorded
    event's, so the chain of an upcast stream verifies as recorded."""

    __slots__ = ("_recorded",)

    @classmethod
    def of(cls, recorded: Event, data: dict[str, Any], schema_version: int) -> UpcastEvent:
        fields = {**recorded.__dict__, "data": data, "schema_version": schema_version}
        event = cls.model_construct(_fields_set=set(recorded.model_fields_set), **fields)
        object.__setattr__(event, "_recorded", recorded)
        return event

    @property
    def recorded(self) -> Event | None:
        try:
            return _RECORDED.__get__(self, UpcastEvent)
        except AttributeError:
            return None  # a copy made by model_copy: its content is its own

    def computed_hash(self) -> str:
        recorded = self.recorded
        return recorded.computed_hash() if recorded is not None else super().computed_hash()


_RECORDED = UpcastEvent.__dict__["_recorded"]
