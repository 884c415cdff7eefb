"""A large run through the executor service over real NATS: a cancel mid-run ends it within a
few seconds however many steps are left (issue 15, "Large runbooks")."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from services_support import Services, publish_trigger, wait_for_event, wait_terminal

from rb_common.bus import Bus
from rb_common.events import EventType
from rb_common.messages import ControlCommand
from rb_common.model import Runbook
from rb_engine.coordinator import fold

pytestmark = pytest.mark.integration

# The definition travels in the trigger and in execution.requested (NATS' 1 MB max payload).
N = 5_000


def chain(n: int) -> Runbook:
    steps: list[dict[str, Any]] = [{"id": "s0", "type": "transform", "inputs": {"i": 0}}]
    steps += [
        {"id": f"s{i}", "type": "transform", "depends_on": [f"s{i - 1}"], "inputs": {"i": i}}
        for i in range(1, n)
    ]
    return Runbook.model_validate({"id": "large-chain", "name": "Large chain", "steps": steps})


@pytest.mark.timeout(300)
async def test_a_cancel_ends_a_5000_step_run_within_a_few_seconds(services: Services, bus: Bus) -> None:
    services.start("executor")
    execution_id = await publish_trigger(bus, chain(N))
    await wait_for_event(
        bus,
        execution_id,
        lambda e: e.type == EventType.STEP_SUCCEEDED and e.data["step_id"] == "s200",
        timeout=120,
    )
    command = ControlCommand(
        execution_id=execution_id,
        type=EventType.EXECUTION_CANCEL_REQUESTED.value,
        actor="tests",
        data={"requested_via": "api", "reason": "too big"},
    )
    asked = time.perf_counter()
    await bus.js.publish(
        bus.names.control_subject(execution_id),
        command.encode(),
        headers={"Nats-Msg-Id": uuid.uuid4().hex},
        stream=bus.names.inbox_stream,
    )
    events = await wait_terminal(bus, execution_id, timeout=60)
    took = time.perf_counter() - asked
    print(f"cancel of a {N}-step run: terminal {took:.3f}s after the request, {len(events)} events")
    state = fold(events)
    assert state.status == "CANCELLED", services.logs()
    assert events[-1].type == EventType.EXECUTION_CANCELLED
    assert state.finished == N
    # The pending steps, all in one steps.skipped (the execution was requested `wind_down: together`).
    [skipped] = [e.data["step_ids"] for e in events if e.type == EventType.STEPS_SKIPPED]
    assert not [e for e in events if e.type == EventType.STEP_SKIPPED]
    last_done = max(int(sid[1:]) for sid, s in state.steps.items() if s.status == "SUCCEEDED")
    cancelled = [
        e.data["step_id"] for e in events if e.type == EventType.STEP_FAILED and e.data.get("cancelled")
    ]
    assert skipped == [f"s{i}" for i in range(last_done + 1 + len(cancelled), N)]
    assert len(cancelled) <= 1 and N // 2 < len(skipped) < N - 200
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert took < 10, f"terminal {took:.1f}s after the cancel"
