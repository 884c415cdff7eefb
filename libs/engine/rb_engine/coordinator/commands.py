"""What the coordinator asks the runner to do; each command becomes at most one event."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rb_common.events import EventType
from rb_common.payloads import EventPayload, StepScheduled, TimerStarted


@dataclass(frozen=True)
class Emit:
    """Record a decision as an event, as is: its type is the payload's."""

    payload: EventPayload

    @property
    def type(self) -> EventType:
        return self.payload.TYPE

    @property
    def data(self) -> dict[str, Any]:
        return self.payload.dump()


@dataclass(frozen=True)
class StartTimer:
    """Be woken at `fire_at`: recorded as timer.started; the driver fires it (timer.fired) once
    that time has come, across restarts (the in-process runner on its clock, the executor
    service through a delayed message)."""

    timer_id: str
    fire_at: datetime
    purpose: str | None = None

    @property
    def payload(self) -> TimerStarted:
        return TimerStarted(timer_id=self.timer_id, fire_at=self.fire_at.isoformat(), purpose=self.purpose)

    @classmethod
    def from_payload(cls, payload: TimerStarted) -> StartTimer:
        return cls(payload.timer_id, payload.fire_time, payload.purpose)


@dataclass(frozen=True)
class RunStep:
    """Run one attempt of a step (or its compensation); recorded as step.scheduled."""

    step_id: str
    step_type: str
    attempt: int
    phase: str  # main | rollback
    inputs: Any
    timeout: float
    idempotency_key: str
    not_before: datetime | None = None

    def payload(self) -> StepScheduled:
        return StepScheduled(
            step_id=self.step_id,
            step_type=self.step_type,
            attempt=self.attempt,
            phase=self.phase,
            inputs=self.inputs,
            timeout=self.timeout,
            idempotency_key=self.idempotency_key,
            not_before=self.not_before.isoformat() if self.not_before else None,
        )

    def event_data(self) -> dict[str, Any]:
        """The step.scheduled data: `payload().dump()`, built directly (the hot path)."""
        return {
            "step_id": self.step_id,
            "step_type": self.step_type,
            "attempt": self.attempt,
            "phase": self.phase,
            "inputs": self.inputs,
            "timeout": self.timeout,
            "idempotency_key": self.idempotency_key,
            "not_before": self.not_before.isoformat() if self.not_before else None,
        }

    @classmethod
    def from_payload(cls, scheduled: StepScheduled) -> RunStep:
        return cls(
            step_id=scheduled.step_id,
            step_type=scheduled.step_type,
            attempt=scheduled.attempt,
            phase=scheduled.phase,
            inputs=scheduled.inputs,
            timeout=scheduled.timeout,
            idempotency_key=scheduled.idempotency_key,
            not_before=scheduled.not_before_time,
        )

    @classmethod
    def from_event_data(cls, data: dict[str, Any]) -> RunStep:
        """From step.scheduled data (a task's `step`); pydantic.ValidationError if malformed."""
        return cls.from_payload(StepScheduled.model_validate(data))


@dataclass(frozen=True)
class CancelStep:
    """Stop a running attempt; the runner reports it as step.failed with cancelled=true."""

    step_id: str


Command = Emit | RunStep | CancelStep | StartTimer
