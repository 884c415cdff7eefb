"""Events for the bus tests: a sealed chain of one execution."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from rb_common.events import Event, EventType


def chain(execution_id: str, count: int, first_seq: int = 1, prev_hash: str | None = None) -> list[Event]:
    events = []
    for seq in range(first_seq, first_seq + count):
        event = Event.sealed(
            prev_hash=prev_hash,
            id=uuid.uuid4().hex,
            execution_id=execution_id,
            seq=seq,
            type=EventType.STEP_SCHEDULED,
            time=datetime.now(UTC),
            actor="tests",
            data={"step_id": f"s{seq}"},
        )
        events.append(event)
        prev_hash = event.hash
    return events
