"""A redelivered task runs only once the record shows its delivery, and not at all once its
attempt has an outcome: rb_executor.service.redelivery against a Coordinator on the in-memory
bus (the chaos test's finding: a side effect done again under one key, one delivery recorded)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from rb_common.bus import Bus
from rb_common.loader import load_runbook_text
from rb_common.memory_bus import memory_bus
from rb_common.messages import TriggerRequest
from rb_common.payloads import StepScheduled, StepStarted, StepSucceeded
from rb_common.registry_events import announce
from rb_engine.coordinator import RunStep
from rb_engine.runner import RunRequest
from rb_executor.service.coordinator import Coordinator
from rb_executor.service.redelivery import Redelivery, judge, recorded_state, settle

RUNBOOK = """\
id: {rid}
name: Effect
version: 1.0.0
owner: tests
legal_basis: Tests of redeliveries
steps:
  - {{id: effect, type: http, inputs: {{url: "http://127.0.0.1:9/effect", method: POST}}}}
"""


class FakeMsg:
    def __init__(self, data: bytes, subject: str) -> None:
        self.data = data
        self.subject = subject

    async def ack(self) -> None:
        pass


@pytest.fixture
async def bus() -> Any:
    b = memory_bus()
    yield b
    await b.close()


async def started_execution(bus: Bus) -> tuple[Coordinator, str, RunStep]:
    rid = f"effect-{uuid.uuid4().hex[:6]}"
    runbook, _ = load_runbook_text(RUNBOOK.format(rid=rid))
    await announce(bus, rid, "approved", revision=1, status="APPROVED", actor="tests")
    execution_id = uuid.uuid4().hex
    request = TriggerRequest(
        execution_id=execution_id,
        actor="tests",
        data=RunRequest(runbook=runbook, trigger={"type": "test", "revision": 1}).event_data(),
    )
    coordinator = Coordinator(bus)
    await coordinator.on_trigger(FakeMsg(request.encode(), bus.names.trigger_subject(rid)))  # type: ignore[arg-type]
    scheduled = (await recorded_state(bus, execution_id)).steps["effect"].scheduled
    assert scheduled is not None
    return coordinator, execution_id, RunStep.from_payload(scheduled)


async def test_a_redelivery_waits_for_its_record_then_runs(bus: Bus) -> None:
    coordinator, execution_id, command = await started_execution(bus)
    assert judge(await recorded_state(bus, execution_id), command, 2) is Redelivery.WAIT
    reports: list[int] = []

    async def report() -> None:
        reports.append(2)
        await coordinator.accept_report(execution_id, StepStarted(step_id="effect", attempt=1, delivery=2))

    assert await settle(bus, execution_id, command, 2, report) is Redelivery.RUN
    assert reports == [2]
    assert (await recorded_state(bus, execution_id)).steps["effect"].deliveries == 2


async def test_a_redelivery_after_the_outcome_is_not_run_again(bus: Bus) -> None:
    coordinator, execution_id, command = await started_execution(bus)
    # The first run's outcome is recorded; its ack never reached JetStream.
    await coordinator.accept_report(execution_id, StepSucceeded(step_id="effect", attempt=1, result={"ok": True}))

    async def report() -> None:
        await coordinator.accept_report(execution_id, StepStarted(step_id="effect", attempt=1, delivery=2))

    assert await settle(bus, execution_id, command, 2, report) is Redelivery.DONE
    state = await recorded_state(bus, execution_id)
    assert state.steps["effect"].deliveries == 1  # the late start was stale: nothing ran, nothing recorded
    assert judge(state, command, 5) is Redelivery.DONE


async def test_another_attempt_or_an_ended_execution_means_done(bus: Bus) -> None:
    _, execution_id, command = await started_execution(bus)
    state = await recorded_state(bus, execution_id)
    later = RunStep.from_payload(command_payload(command, attempt=2))
    assert judge(state, later, 2) is Redelivery.DONE
    assert judge(state, command, 1) is Redelivery.RUN


def command_payload(command: RunStep, attempt: int) -> StepScheduled:
    data = {**command.event_data(), "attempt": attempt}
    return StepScheduled.model_validate(data)
