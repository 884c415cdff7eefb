"""The approval step in the kernel: requested, decided by people (facts), counted by decide,
timed out by its timer, and every stream replays VERIFIED."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from harness import Drive

from rb_common.errors import RbError
from rb_common.events import Event, EventType
from rb_common.loader import load_runbook_text
from rb_common.payloads import ApprovalDecided, ApprovalRequested
from rb_common.ports import InMemoryEventStore
from rb_common.settings import Settings
from rb_engine.clock import FakeClock
from rb_engine.coordinator import fold
from rb_engine.coordinator.applier import apply, controlled, due, requested
from rb_engine.replay import Replayer
from rb_engine.runner import PluginExecutor, Runner, RunRequest
from rb_engine.steps.registry import default_registry

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def runbook(gate: str = "", on_failure: str = "abort") -> str:
    return f"""
id: gated
name: gated
version: 1.0.0
owner: tests
legal_basis: tests
steps:
  - {{id: prepare, type: transform, inputs: {{a: 1}}}}
  - id: gate
    type: approval
    depends_on: [prepare]
    on_failure: {on_failure}
    inputs: {{approvers: [alice, bob, "role:approver"], prompt: "Restart ${{params.svc}}?"{gate}}}
  - {{id: after, type: transform, depends_on: [gate], inputs: {{b: 2}}}}
parameters:
  type: object
  properties:
    svc: {{type: string, default: api}}
"""


def decision(actor: str, verdict: str = "approve", comment: str | None = None) -> ApprovalDecided:
    return ApprovalDecided(
        step_id="gate", approval_id="x1:gate", decision=verdict, actor=actor, comment=comment, via="api"
    )


async def run(
    text: str, script: dict[str, list[ApprovalDecided]] | None = None, actor: str = "requester"
) -> list[Event]:
    model, _ = load_runbook_text(text)
    store = InMemoryEventStore()
    script = script or {}

    def decide(request: ApprovalRequested) -> list[ApprovalDecided]:
        return script.get(request.step_id, [])

    runner = Runner(
        store, PluginExecutor(default_registry()), FakeClock(T0), Settings(), decide_approval=decide
    )
    request = RunRequest(
        runbook=model,
        execution_id="x1",
        params={"svc": "api"},
        trigger={"type": "api", "actor": actor},
        actor=actor,
    )
    await runner.run(request)
    events = store.read("x1")
    report = await Replayer(PluginExecutor(default_registry()), Settings()).replay(events)
    assert report.deviations == [], [str(d) for d in report.deviations]
    return events


def of(events: list[Event], type_: EventType) -> list[Event]:
    return [e for e in events if e.type == type_]


async def test_an_approval_continues_the_run_and_records_who_and_why() -> None:
    events = await run(runbook(), {"gate": [decision("key:alice", comment="looks fine")]})
    state = fold(events)
    assert state.status == "SUCCEEDED"
    [asked] = of(events, EventType.APPROVAL_REQUESTED)
    assert asked.data["approval_id"] == "x1:gate" and asked.data["prompt"] == "Restart api?"
    assert asked.data["requested_by"] == "requester"
    [decided] = of(events, EventType.APPROVAL_DECIDED)
    assert decided.actor == "key:alice" and decided.data["comment"] == "looks fine"
    gate = state.steps["gate"]
    assert gate.outputs["approved_by"] == ["key:alice"]
    assert gate.outputs["comments"] == [{"actor": "key:alice", "comment": "looks fine"}]
    assert EventType.STEP_SCHEDULED.value not in [
        e.type.value for e in events if e.data.get("step_id") == "gate"
    ]
    assert state.steps["after"].status == "SUCCEEDED"


async def test_min_approvals_waits_for_distinct_people() -> None:
    gate = ", min_approvals: 2, timeout: 1h"
    once = await run(runbook(gate), {"gate": [decision("key:alice"), decision("key:alice")]})
    assert fold(once).status == "FAILED", "one person twice is one approval: the timeout fails it"
    assert len(of(once, EventType.APPROVAL_DECIDED)) == 1, "the repeated decision changed nothing"
    twice = await run(runbook(gate), {"gate": [decision("key:alice"), decision("key:bob")]})
    state = fold(twice)
    assert state.status == "SUCCEEDED" and state.steps["gate"].outputs["approved_by"] == [
        "key:alice",
        "key:bob",
    ]


async def test_a_rejection_fails_the_step_and_its_on_failure_applies() -> None:
    events = await run(runbook(), {"gate": [decision("key:bob", "reject", "not now")]})
    state = fold(events)
    assert state.status == "FAILED" and state.steps["gate"].error == "rejected by key:bob: not now"
    assert state.steps["after"].status == "SKIPPED"
    cont = fold(await run(runbook(on_failure="continue"), {"gate": [decision("key:bob", "reject")]}))
    assert cont.status == "SUCCEEDED" and cont.steps["after"].status == "SUCCEEDED"


async def test_the_requester_may_not_decide() -> None:
    events = await run(runbook(", timeout: 10m"), {"gate": [decision("requester")]})
    assert of(events, EventType.APPROVAL_DECIDED) == []
    assert fold(events).status == "FAILED"


@pytest.mark.parametrize(
    ("action", "status", "gate_status"),
    [("fail", "FAILED", "FAILED"), ("approve", "SUCCEEDED", "SUCCEEDED"), ("skip", "SUCCEEDED", "SKIPPED")],
)
async def test_a_timeout_follows_its_timeout_action(action: str, status: str, gate_status: str) -> None:
    events = await run(runbook(f", timeout: 30m, timeout_action: {action}"))
    state = fold(events)
    assert state.status == status and state.steps["gate"].status == gate_status
    [timer] = of(events, EventType.TIMER_STARTED)
    asked = of(events, EventType.APPROVAL_REQUESTED)[0]
    assert timer.data["timer_id"] == "approval:gate"
    assert datetime.fromisoformat(timer.data["fire_at"]) == asked.time + timedelta(minutes=30)
    if action == "skip":
        assert state.steps["after"].status == "SKIPPED"
    if action == "approve":
        assert state.steps["gate"].outputs["timed_out"] is True


def drive_to_gate(gate: str = ", timeout: 10m") -> Drive:
    drive = Drive(runbook(gate))
    model, _ = load_runbook_text(drive.yaml_text)
    data = {
        "runbook": model.snapshot(),
        "params": {"svc": "api"},
        "trigger": {"type": "api", "actor": "requester"},
    }
    drive.state = drive.state.__class__(execution_id="ex1")
    applied = drive.apply(requested(drive.state, data, "requester"))
    assert [r.step_id for r in applied.run] == ["prepare"]
    drive.report(
        EventType.STEP_SUCCEEDED,
        {"step_id": "prepare", "attempt": 1, "phase": "main", "result": {}, "outputs": {}},
    )
    return drive


def decide(drive: Drive, actor: str, verdict: str = "approve") -> list[Any]:
    data = decision(actor, verdict).model_copy(update={"approval_id": "ex1:gate"}).dump()
    return controlled(drive.state, EventType.APPROVAL_DECIDED.value, data, actor)


def test_the_execution_waits_for_approval_and_pause_and_resume_keep_it_waiting() -> None:
    drive = drive_to_gate()
    assert drive.state.status == "WAITING_APPROVAL"
    assert drive.state.steps["gate"].status == "RUNNING"
    drive.apply(controlled(drive.state, "execution.paused", {"requested_via": "api"}, "key:op"))
    assert drive.state.status == "PAUSED"
    drive.apply(decide(drive, "key:alice"))
    assert drive.state.steps["gate"].status == "SUCCEEDED", "a decision is a running step finishing"
    assert drive.state.status == "PAUSED" and "after" not in {r for r in drive.state.active}
    applied = drive.apply(controlled(drive.state, "execution.resumed", {"requested_via": "api"}, "key:op"))
    assert drive.state.status == "RUNNING" and [r.step_id for r in applied.run] == ["after"]


def test_decisions_are_news_only_while_pending_and_once_per_actor() -> None:
    drive = drive_to_gate()
    assert decide(drive, "requester") == [], "the requester may not decide"
    wrong = decision("key:alice").dump()
    assert controlled(drive.state, "approval.decided", wrong, "key:alice") == [], "another approval id"
    assert controlled(drive.state, "approval.decided", {"step_id": "gate"}, "x") == [], "malformed"
    [fact] = decide(drive, "key:alice", "maybe") or [None]
    assert fact is None, "only approve or reject"
    drive.apply(decide(drive, "key:alice"))
    assert drive.state.status == "RUNNING"
    assert decide(drive, "key:bob") == [], "decided already: later decisions are ignored"


def test_a_timer_fired_after_a_restart_applies_the_timeout_action() -> None:
    drive = drive_to_gate(", timeout: 10m, timeout_action: skip")
    events = list(drive.events)
    # A restarted coordinator refolds the stream and fires the due timer.
    state = fold(events)
    [asked] = of(events, EventType.APPROVAL_REQUESTED)
    assert state.pending_timers() == {"approval:gate": asked.time + timedelta(minutes=10)}
    facts = due(state, T0 + timedelta(hours=1))
    assert [f.data["timer_id"] for f in facts] == ["approval:gate"]
    applied = apply(state, facts, drive.seal)
    assert applied.state.steps["gate"].status == "SKIPPED"
    assert applied.state.status == "SUCCEEDED" and applied.state.steps["after"].status == "SKIPPED"


def test_cancel_while_waiting_ends_the_approval() -> None:
    drive = drive_to_gate()
    drive.apply(controlled(drive.state, "execution.cancel_requested", {"requested_via": "api"}, "key:op"))
    assert drive.state.status == "CANCELLED"
    assert drive.state.steps["gate"].status == "FAILED"
    assert decide(drive, "key:alice") == []


async def test_an_approval_nobody_can_give_in_process_is_a_clear_error() -> None:
    model, _ = load_runbook_text(runbook())
    runner = Runner(InMemoryEventStore(), PluginExecutor(default_registry()), FakeClock(T0), Settings())
    with pytest.raises(RbError, match="waits for approval of step 'gate'"):
        await runner.run(RunRequest(runbook=model, execution_id="x2", params={"svc": "api"}))


def test_a_retried_approval_asks_again_under_a_new_id_and_old_decisions_do_not_count() -> None:
    drive = drive_to_gate()
    drive.apply(decide(drive, "key:alice", "reject"))
    assert drive.state.status == "FAILED" and drive.state.steps["gate"].attempt == 1
    applied = drive.apply(controlled(drive.state, "step.retry_requested", {"step_id": "gate"}, "key:op"))
    assert applied.state.status == "WAITING_APPROVAL"
    [first, second] = of(list(drive.events), EventType.APPROVAL_REQUESTED)
    assert first.data["approval_id"] == "ex1:gate"
    assert second.data["approval_id"] == "ex1:gate:2"
    assert drive.state.steps["gate"].attempt == 2
    assert decide(drive, "key:bob") == [], "a decision on the first request (a late link) is not news"
    late = decision("key:bob").model_copy(update={"approval_id": "ex1:gate:2"}).dump()
    drive.apply(controlled(drive.state, "approval.decided", late, "key:bob"))
    assert drive.state.steps["gate"].status == "SUCCEEDED"
    assert drive.state.status == "RUNNING"
