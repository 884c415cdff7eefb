"""A `wait_for_event` step's registration is stored before the message that made the step wait
is acked, and an executor that takes that message again (the first one died in between) loads
the execution and registers the wait from the loaded state. Coordinator and OutsideEvents on
the in-memory bus, driven through Coordinator.on_trigger."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from rb_common.bus import Bus, read_execution
from rb_common.events import EventType
from rb_common.loader import load_runbook_text
from rb_common.memory_bus import MemoryJetStream, memory_bus
from rb_common.messages import OutsideEvent, TriggerRequest, WaiterRegistration
from rb_common.registry_events import announce
from rb_engine.runner import RunRequest
from rb_executor.service.coordinator import Coordinator
from rb_executor.service.outside import OutsideEvents

RUNBOOK = """\
id: {rid}
name: Waits
version: 1.0.0
owner: tests
legal_basis: Tests of outside-event registrations
steps:
  - id: done
    type: wait_for_event
    inputs: {{subject: deploy.finished, correlation: CHG-1, timeout: 60s}}
"""


class FakeMsg:
    def __init__(self, data: bytes, subject: str) -> None:
        self.data = data
        self.subject = subject
        self.acked = False

    async def ack(self) -> None:
        self.acked = True

    async def term(self) -> None:
        raise AssertionError("a good trigger is not terminated")


@pytest.fixture
async def bus() -> Any:
    b = memory_bus()
    yield b
    await b.close()


async def trigger_message(bus: Bus) -> tuple[str, FakeMsg]:
    rid = f"waits-{uuid.uuid4().hex[:6]}"
    runbook, _ = load_runbook_text(RUNBOOK.format(rid=rid))
    await announce(bus, rid, "approved", revision=1, status="APPROVED", actor="tests")
    execution_id = uuid.uuid4().hex
    request = TriggerRequest(
        execution_id=execution_id,
        actor="tests",
        data=RunRequest(runbook=runbook, trigger={"type": "test", "revision": 1}).event_data(),
    )
    return execution_id, FakeMsg(request.encode(), bus.names.trigger_subject(rid))


async def registrations(bus: Bus, execution_id: str) -> list[WaiterRegistration]:
    sub = await bus.js.subscribe(bus.names.waiter_subject(execution_id), ordered_consumer=True)
    found = []
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=0.05)
            except TimeoutError:
                return found
            found.append(WaiterRegistration.model_validate_json(msg.data))
    finally:
        await sub.unsubscribe()


async def waiting(bus: Bus, execution_id: str) -> bool:
    return any(e.type == EventType.STEP_WAITING for e, _ in await read_execution(bus, execution_id))


async def test_the_message_that_makes_a_step_wait_is_acked_only_once_the_wait_is_registered(bus: Bus) -> None:
    coordinator = Coordinator(bus)
    OutsideEvents(coordinator)
    execution_id, msg = await trigger_message(bus)
    await coordinator.on_trigger(msg)  # type: ignore[arg-type]
    assert msg.acked
    # Looked at before anything else can run (no await): stored before the handler returned.
    js = bus.js
    assert isinstance(js, MemoryJetStream)
    stored = js.messages(bus.names.outside_stream, bus.names.waiter_subject(execution_id))
    assert [WaiterRegistration.model_validate_json(m.data).step_id for m in stored] == ["done"]
    assert await waiting(bus, execution_id)
    assert [(r.step_id, r.subject, r.correlation) for r in await registrations(bus, execution_id)] == [
        ("done", "deploy.finished", "CHG-1")
    ]


async def test_an_executor_that_takes_the_message_again_registers_the_waiting_step(bus: Bus) -> None:
    # The first executor records step.waiting and dies before registering (no OutsideEvents here:
    # nothing registers), so its message is not acked and comes again to another executor.
    execution_id, msg = await trigger_message(bus)
    await Coordinator(bus).on_trigger(msg)  # type: ignore[arg-type]
    assert await waiting(bus, execution_id)
    assert await registrations(bus, execution_id) == []

    second = Coordinator(bus)
    outside = OutsideEvents(second)
    await second.on_trigger(msg)  # type: ignore[arg-type]
    found = await registrations(bus, execution_id)
    assert [(r.step_id, r.attempt) for r in found] == [("done", 1)]
    assert outside.index == {("deploy.finished", '"CHG-1"'): {execution_id}}
    # Nothing recorded twice: the second advance found the execution already waiting.
    types = [e.type for e, _ in await read_execution(bus, execution_id)]
    assert types.count(EventType.STEP_WAITING) == 1 and types.count(EventType.EXECUTION_REQUESTED) == 1


async def test_an_event_that_came_first_is_received_when_the_step_starts_waiting(bus: Bus) -> None:
    # The registration matches the buffered event and records it while the advance that made
    # the step wait is still settling: no deadlock on the execution's lock or on itself.
    event = OutsideEvent(subject="deploy.finished", correlation="CHG-1", data={"version": "v8"}, id="ev-1")
    await bus.js.publish(
        bus.names.outside_event_subject("deploy.finished"), event.encode(), stream=bus.names.outside_stream
    )
    coordinator = Coordinator(bus)
    OutsideEvents(coordinator)
    execution_id, msg = await trigger_message(bus)
    await asyncio.wait_for(coordinator.on_trigger(msg), 30)  # type: ignore[arg-type]
    assert msg.acked
    types = [e.type for e, _ in await read_execution(bus, execution_id)]
    assert types.count(EventType.EVENT_RECEIVED) == 1, types
