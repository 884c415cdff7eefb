"""What the coordinator asks the runner to do; each command becomes at most one event."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rb_common.events import EventType


@dataclass(frozen=True)
class Emit:
    """Record a decision as an event, as is."""

    type: EventType
    data: dict[str, Any]


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

    def event_data(self) -> dict[str, Any]:
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
    def from_event_data(cls, data: dict[str, Any]) -> RunStep:
        not_before = data.get("not_before")
        return cls(
            step_id=data["step_id"],
            step_type=data["step_type"],
            attempt=data["attempt"],
            phase=data.get("phase", "main"),
            inputs=data.get("inputs"),
            timeout=data["timeout"],
            idempotency_key=data["idempotency_key"],
            not_before=datetime.fromisoformat(not_before) if not_before else None,
        )


@dataclass(frozen=True)
class CancelStep:
    """Stop a running attempt; the runner reports it as step.failed with cancelled=true."""

    step_id: str


Command = Emit | RunStep | CancelStep
