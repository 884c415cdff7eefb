"""The recorder projects approval steps into `approvals`: pending while waiting, then approved /
rejected / timed_out / cancelled, with every decision (who, what, comment, when); event by
event and in batches alike. The API reads them with rb_store.approval_queries."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine

from rb_common.events import Event, EventType
from rb_common.loader import load_runbook_text
from rb_common.payloads import ApprovalDecided, ApprovalRequested
from rb_common.ports import InMemoryEventStore
from rb_common.settings import Settings
from rb_engine.clock import FakeClock
from rb_engine.runner import PluginExecutor, Runner, RunRequest
from rb_engine.steps.registry import default_registry
from rb_store.approval_queries import get_approval, list_approvals
from rb_store.db import make_engine, migrate
from rb_store.recorder import Recorder

RUNBOOK = """
id: gated
name: gated
steps:
  - id: gate
    type: approval
    inputs: {approvers: [alice, "role:approver"], prompt: "Go?", require_comment: true, timeout: 10m%s}
  - {id: after, type: transform, depends_on: [gate], inputs: {b: 2}}
"""


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'rb.db'}")
    migrate(engine)
    yield engine
    engine.dispose()


async def run(execution_id: str, decisions: list[tuple[str, str]], extra: str = "") -> list[Event]:
    model, _ = load_runbook_text(RUNBOOK % extra)
    store = InMemoryEventStore()

    def decide(request: ApprovalRequested) -> list[ApprovalDecided]:
        return [
            ApprovalDecided(
                step_id=request.step_id,
                approval_id=request.approval_id,
                decision=verdict,
                actor=actor,
                comment=f"{actor} says {verdict}",
                via="api",
            )
            for actor, verdict in decisions
        ]

    runner = Runner(
        store,
        PluginExecutor(default_registry()),
        FakeClock(datetime(2025, 1, 1, tzinfo=UTC)),
        Settings(),
        decide_approval=decide,
    )
    request = RunRequest(
        runbook=model, execution_id=execution_id, trigger={"type": "api", "actor": "key:carol"}
    )
    await runner.run(request)
    return store.read(execution_id)


async def test_pending_then_approved_event_by_event(engine: Engine) -> None:
    events = await run("ap1", [("key:alice", "approve")])
    recorder = Recorder(engine)
    asked = next(i for i, e in enumerate(events) if e.type == EventType.APPROVAL_REQUESTED)
    for event in events[: asked + 1]:
        recorder.apply(event)
    pending = get_approval(engine, "ap1:gate")
    assert pending is not None and pending["status"] == "pending"
    assert pending["prompt"] == "Go?" and pending["require_comment"] is True
    assert pending["requested_by"] == "key:carol" and pending["approvers"] == ["alice", "role:approver"]
    assert pending["timeout_at"] == "2025-01-01T00:10:00+00:00" and pending["decided_at"] is None
    assert [a["id"] for a in list_approvals(engine, status="pending")] == ["ap1:gate"]
    for event in events[asked + 1 :]:
        recorder.apply(event)
    done = get_approval(engine, "ap1:gate")
    assert done is not None and done["status"] == "approved" and done["decided_at"] is not None
    [decision] = done["decisions"]
    assert decision["actor"] == "key:alice" and decision["comment"] == "key:alice says approve"
    assert decision["decision"] == "approve" and decision["at"].startswith("2025-01-01")
    assert list_approvals(engine, status="pending") == []


@pytest.mark.parametrize(
    ("decisions", "extra", "status"),
    [
        ([("key:bob", "reject")], "", "rejected"),
        ([], "", "timed_out"),
        ([], ", timeout_action: skip", "timed_out"),
        ([], ", timeout_action: approve", "timed_out"),
    ],
)
async def test_outcomes_in_a_batch(
    engine: Engine, decisions: list[tuple[str, str]], extra: str, status: str
) -> None:
    events = await run("ap2", decisions, extra)
    Recorder(engine).apply_batch([(e, None) for e in events])
    row = get_approval(engine, "ap2:gate")
    assert row is not None and row["status"] == status
    assert list_approvals(engine, status=status, exclude_runbooks=["gated"]) == []
