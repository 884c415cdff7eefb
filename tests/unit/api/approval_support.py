"""An execution waiting at an approval step, recorded into the API's database (imported by name,
like the other support modules): the coordinator decides it up to approval.requested and the
recorder projects it, as the executor and the recorder would."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from rb_common.events import Event, EventType
from rb_common.loader import load_runbook_text
from rb_common.snapshot import requested_data
from rb_engine.coordinator import ExecutionState
from rb_engine.coordinator.applier import Fact, apply, requested
from rb_store.recorder import Recorder

T0 = datetime(2025, 11, 29, tzinfo=UTC)


def approval_yaml(runbook_id: str, approvers: str = "[alice, bob]", require_comment: bool = True) -> str:
    return (
        f"id: {runbook_id}\n"
        "name: Approval API test\n"
        "version: 1.0.0\n"
        "steps:\n"
        "  - id: gate\n"
        "    type: approval\n"
        f"    inputs: {{approvers: {approvers}, prompt: 'Go?', require_comment: {str(require_comment).lower()}, timeout: 1h}}\n"
        "  - {id: after, type: transform, depends_on: [gate], inputs: {b: 2}}\n"
    )


class Waiting:
    """One execution at its approval step, its state, and a recorder to write what follows."""

    def __init__(self, engine: Engine, text: str, requester: str, revision: int = 1) -> None:
        self.engine = engine
        self.execution_id = uuid.uuid4().hex
        self.recorder = Recorder(engine)
        runbook = load_runbook_text(text)[0]
        data = requested_data(
            runbook,
            params={},
            trigger={"type": "api", "actor": requester, "revision": revision},
            actor=requester,
        )
        self.state = ExecutionState(execution_id=self.execution_id)
        self.record(requested(self.state, data, requester))
        assert self.state.status == "WAITING_APPROVAL"

    @property
    def approval_id(self) -> str:
        return f"{self.execution_id}:gate"

    def seal(self, state: ExecutionState, type_: EventType, data: dict[str, Any], actor: str) -> Event:
        return Event.sealed(
            prev_hash=state.last_hash,
            id=uuid.uuid4().hex,
            execution_id=self.execution_id,
            seq=state.seq + 1,
            type=type_,
            time=T0 + timedelta(seconds=state.seq),
            actor=actor,
            data=data,
        )

    def record(self, facts: list[Fact]) -> list[Event]:
        applied = apply(self.state, facts, self.seal)
        self.state = applied.state
        for event in applied.events:
            self.recorder.apply(event)
        return applied.events
