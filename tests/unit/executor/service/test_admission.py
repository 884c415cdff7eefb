"""The executor's own lifecycle check: a trigger starts a run only for the revision the registry
bucket says is APPROVED now; anything else is recorded as requested, then aborted (refused),
and replays VERIFIED. Driven through Coordinator.on_trigger on the in-memory bus."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from prometheus_client import REGISTRY

from rb_common.bus import Bus, read_execution
from rb_common.events import EventType
from rb_common.loader import load_runbook_text
from rb_common.memory_bus import memory_bus
from rb_common.messages import TriggerRequest
from rb_common.registry_events import announce
from rb_common.settings import Settings
from rb_common.slots import Verdict
from rb_engine.replay import Replayer
from rb_engine.runner import PluginExecutor, RunRequest
from rb_engine.steps.registry import default_registry
from rb_executor.service.admission import judge, refusal_kind
from rb_executor.service.coordinator import Coordinator

RUNBOOK = """\
id: {rid}
name: Admission
version: 1.0.0
owner: tests
legal_basis: Tests of the executor's lifecycle check
steps:
  - {{id: a, type: transform, inputs: {{x: 1}}}}
"""


class FakeMsg:
    def __init__(self, data: bytes, subject: str) -> None:
        self.data = data
        self.subject = subject
        self.acked = self.termed = False

    async def ack(self) -> None:
        self.acked = True

    async def term(self) -> None:
        self.termed = True


@pytest.fixture
async def bus() -> Any:
    b = memory_bus()
    yield b
    await b.close()


async def trigger(bus: Bus, rid: str, revision: Any = 1) -> tuple[str, FakeMsg]:
    runbook, _ = load_runbook_text(RUNBOOK.format(rid=rid))
    trigger: dict[str, Any] = {"type": "test"} if revision is None else {"type": "test", "revision": revision}
    execution_id = uuid.uuid4().hex
    request = TriggerRequest(
        execution_id=execution_id,
        actor="tests",
        data=RunRequest(runbook=runbook, trigger=trigger).event_data(),
    )
    msg = FakeMsg(request.encode(), bus.names.trigger_subject(rid))
    await Coordinator(bus).on_trigger(msg)  # type: ignore[arg-type]
    return execution_id, msg


async def events_of(bus: Bus, execution_id: str) -> list[Any]:
    return [event for event, _ in await read_execution(bus, execution_id)]


async def assert_refused(bus: Bus, execution_id: str, msg: FakeMsg, reason: str) -> None:
    events = await events_of(bus, execution_id)
    assert [e.type for e in events] == [EventType.EXECUTION_REQUESTED, EventType.EXECUTION_ABORTED]
    assert events[1].data == {"reason": reason, "refused": True}
    assert events[1].actor == "rb-executor"
    assert msg.acked  # recorded, not redelivered
    report = await Replayer(PluginExecutor(default_registry()), Settings()).replay(events)
    assert report.verified, [str(d) for d in report.deviations]
    assert report.state.status == "ABORTED"


async def test_an_approved_revision_starts(bus: Bus) -> None:
    rid = f"adm-{uuid.uuid4().hex[:8]}"
    await announce(bus, rid, "approved", revision=1, status="APPROVED", actor="key:second")
    execution_id, msg = await trigger(bus, rid)
    types = [e.type for e in await events_of(bus, execution_id)]
    assert types[:2] == [EventType.EXECUTION_REQUESTED, EventType.EXECUTION_STARTED]
    assert msg.acked


@pytest.mark.parametrize(
    ("status", "current", "reason"),
    [
        ("DRAFT", 1, "revision 1 of {rid} is not APPROVED (DRAFT)"),
        ("DEPRECATED", 1, "revision 1 of {rid} is not APPROVED (DEPRECATED)"),
        ("APPROVED", 2, "revision 1 of {rid} is not APPROVED (revision 2 is current and APPROVED)"),
        ("DRAFT", 2, "revision 1 of {rid} is not APPROVED (revision 2 is current and DRAFT)"),
    ],
)
async def test_a_revision_that_is_not_approved_now_is_refused_and_recorded(
    bus: Bus, status: str, current: int, reason: str
) -> None:
    rid = f"adm-{uuid.uuid4().hex[:8]}"
    await announce(bus, rid, "approved", revision=1, status="APPROVED", actor="key:second")
    # Changed after the trigger was made (or published straight onto the bus): the executor
    # reads the bucket when the run starts.
    await announce(bus, rid, "changed", revision=current, status=status, actor="key:author")
    execution_id, msg = await trigger(bus, rid)
    await assert_refused(bus, execution_id, msg, reason.format(rid=rid))


async def test_a_runbook_the_registry_does_not_know_is_refused(bus: Bus) -> None:
    rid = f"adm-{uuid.uuid4().hex[:8]}"
    execution_id, msg = await trigger(bus, rid)
    await assert_refused(
        bus, execution_id, msg, f"revision 1 of {rid} is not APPROVED (the registry has no entry for {rid})"
    )


async def test_a_request_without_a_revision_is_refused(bus: Bus) -> None:
    rid = f"adm-{uuid.uuid4().hex[:8]}"
    await announce(bus, rid, "approved", revision=1, status="APPROVED", actor="key:second")
    execution_id, msg = await trigger(bus, rid, revision=None)
    await assert_refused(
        bus, execution_id, msg, f"the request names no revision of {rid}: only an APPROVED revision runs"
    )


async def test_a_deleted_runbook_is_refused_and_a_repeated_trigger_adds_nothing(bus: Bus) -> None:
    rid = f"adm-{uuid.uuid4().hex[:8]}"
    await announce(bus, rid, "deleted", actor="key:author")
    execution_id, msg = await trigger(bus, rid)
    await assert_refused(bus, execution_id, msg, f"revision 1 of {rid} is not APPROVED ({rid} was deleted)")


def test_judge_takes_only_integer_revisions() -> None:
    approved = {"change": "approved", "revision": 1, "status": "APPROVED"}
    assert judge("x", 1, approved) is None
    assert judge("x", True, approved) is not None
    assert judge("x", "1", approved) is not None
    assert judge("x", 1, {"change": "schedule_paused"}) is not None
    assert judge(None, 1, approved) == "the request names no runbook"


def refused_count(rid: str, reason: str) -> float:
    return REGISTRY.get_sample_value("rb_admission_refused_total", {"runbook": rid, "reason": reason}) or 0.0


async def test_a_refusal_is_counted_once_by_reason_even_when_its_trigger_comes_twice(bus: Bus) -> None:
    rid = f"adm-{uuid.uuid4().hex[:8]}"
    runbook, _ = load_runbook_text(RUNBOOK.format(rid=rid))
    request = TriggerRequest(
        execution_id=uuid.uuid4().hex,
        actor="tests",
        data=RunRequest(runbook=runbook, trigger={"type": "test", "revision": 1}).event_data(),
    )
    coordinator = Coordinator(bus)
    for _ in range(2):  # a redelivery: the refusal is recorded and counted once
        await coordinator.on_trigger(FakeMsg(request.encode(), bus.names.trigger_subject(rid)))  # type: ignore[arg-type]
    events = await events_of(bus, request.execution_id)
    assert [e.type for e in events] == [EventType.EXECUTION_REQUESTED, EventType.EXECUTION_ABORTED]
    assert refused_count(rid, "not_approved") == 1
    assert refused_count(rid, "runbook_limit") == refused_count(rid, "queue_full") == 0


@pytest.mark.parametrize(
    ("refused", "verdict", "kind"),
    [
        ("not APPROVED", None, "not_approved"),
        (None, None, None),
        (None, Verdict("start"), None),
        (None, Verdict("queue", "waiting", "runbook"), None),
        (None, Verdict("refuse", "on_limit: reject", "runbook"), "runbook_limit"),
        (None, Verdict("refuse", "the execution queue is full", "global"), "queue_full"),
    ],
)
def test_refusal_kinds(refused: str | None, verdict: Verdict | None, kind: str | None) -> None:
    assert refusal_kind(refused, verdict) == kind
