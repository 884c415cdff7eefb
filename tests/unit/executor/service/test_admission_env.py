"""Runs started by services see the executor's environment: the variables the runbook reads are
snapshotted into `execution.requested` when the run starts (rb-002's CHANGE_WINDOW)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from test_admission import FakeMsg

from rb_common.bus import Bus, read_execution
from rb_common.loader import load_runbook_text
from rb_common.memory_bus import memory_bus
from rb_common.messages import TriggerRequest
from rb_common.registry_events import announce
from rb_engine.runner import RunRequest
from rb_executor.service.coordinator import Coordinator

RUNBOOK = """\
id: {rid}
name: Environment
version: 1.0.0
owner: tests
legal_basis: Tests of the executor's environment snapshot
assumptions:
  - window_open: "${{env.RB_TEST_CHANGE_WINDOW == 'open'}}"
steps:
  - {{id: a, type: transform, inputs: {{x: 1}}}}
"""


@pytest.fixture
async def bus() -> Any:
    b = memory_bus()
    yield b
    await b.close()


async def start(bus: Bus, rid: str) -> list[Any]:
    runbook, _ = load_runbook_text(RUNBOOK.format(rid=rid))
    execution_id = uuid.uuid4().hex
    request = TriggerRequest(
        execution_id=execution_id,
        actor="tests",
        data=RunRequest(runbook=runbook, trigger={"type": "api", "revision": 1}).event_data(),
    )
    assert request.data["env"] == {}
    msg = FakeMsg(request.encode(), bus.names.trigger_subject(rid))
    await Coordinator(bus).on_trigger(msg)  # type: ignore[arg-type]
    return [event for event, _ in await read_execution(bus, execution_id)]


@pytest.mark.parametrize(("value", "held"), [("open", True), ("closed", False), (None, False)])
async def test_the_executor_snapshots_the_variables_the_runbook_reads(
    bus: Bus, monkeypatch: pytest.MonkeyPatch, value: str | None, held: bool
) -> None:
    if value is None:
        monkeypatch.delenv("RB_TEST_CHANGE_WINDOW", raising=False)
    else:
        monkeypatch.setenv("RB_TEST_CHANGE_WINDOW", value)
    monkeypatch.setenv("RB_TEST_UNREAD", "not read by the runbook")
    rid = f"env-{uuid.uuid4().hex[:8]}"
    await announce(bus, rid, "approved", revision=1, status="APPROVED", actor="key:second")
    events = await start(bus, rid)
    assert events[0].data["env"] == ({} if value is None else {"RB_TEST_CHANGE_WINDOW": value})
    checked = next(e for e in events if e.type == "assumption.checked")
    assert checked.data["ok"] is held


async def test_a_runbook_started_again_sees_the_environment_as_it_is_then(
    bus: Bus, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a definition reads is worked out once per definition; the values never are."""
    rid = f"env-{uuid.uuid4().hex[:8]}"
    await announce(bus, rid, "approved", revision=1, status="APPROVED", actor="key:second")
    seen = []
    for value in ("open", "closed", None, "open"):
        if value is None:
            monkeypatch.delenv("RB_TEST_CHANGE_WINDOW", raising=False)
        else:
            monkeypatch.setenv("RB_TEST_CHANGE_WINDOW", value)
        events = await start(bus, rid)
        seen.append(events[0].data["env"].get("RB_TEST_CHANGE_WINDOW"))
    assert seen == ["open", "closed", None, "open"]
