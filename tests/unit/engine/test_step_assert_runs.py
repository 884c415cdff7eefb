"""The `assert` step end to end in the runner: validated, run, failing the execution with its
message (and never retried), replayed like any pure step."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from rb_common.events import Event, EventType
from rb_common.loader import load_runbook_text
from rb_common.ports import InMemoryEventStore
from rb_common.settings import Settings
from rb_common.validator import validate_file
from rb_engine.clock import FakeClock
from rb_engine.replay import Replayer
from rb_engine.runner import PluginExecutor, Runner, RunRequest
from rb_engine.steps.registry import default_registry

RUNBOOK = """
id: assert-demo
name: assert demo
version: 1.0.0
owner: tests
legal_basis: tests
parameters: {type: object, properties: {free: {type: integer, default: 20}}}
defaults: {retry: {max_attempts: 3}}
steps:
  - {id: measure, type: transform, inputs: {free: "${params.free}"}, outputs: {free: $.free}}
  - id: enough_space
    type: assert
    depends_on: [measure]
    inputs: {that: "${steps.measure.outputs.free >= 10}", message: "less than 10% free"}
"""


async def run(free: int) -> tuple[str, list[Event]]:
    runbook, _ = load_runbook_text(RUNBOOK)
    store = InMemoryEventStore()
    runner = Runner(
        store, PluginExecutor(default_registry()), FakeClock(datetime(2025, 1, 1, tzinfo=UTC)), Settings()
    )
    state = await runner.run(RunRequest(runbook=runbook, params={"free": free}, execution_id="x1"))
    return state.status, store.read("x1")


@pytest.mark.parametrize(("free", "status"), [(20, "SUCCEEDED"), (5, "FAILED")])
async def test_the_condition_decides_and_a_false_one_is_not_retried(free: int, status: str) -> None:
    outcome, events = await run(free)
    assert outcome == status
    attempts = [
        e for e in events if e.type == EventType.STEP_SCHEDULED and e.data["step_id"] == "enough_space"
    ]
    assert len(attempts) == 1
    if status == "FAILED":
        [failed] = [e for e in events if e.type == EventType.STEP_FAILED]
        assert failed.data["error"] == "less than 10% free" and failed.data["retryable"] is False
    report = await Replayer(PluginExecutor(default_registry()), Settings()).replay(events)
    assert report.deviations == []


def test_the_validator_knows_its_inputs(tmp_path: Path) -> None:
    def errors(text: str) -> list[str]:
        path = tmp_path / "runbook.yaml"
        path.write_text(text)
        return [i.message for i in validate_file(path)[1] if i.level == "error"]

    assert errors(RUNBOOK) == []
    assert any("unknown input 'mesage'" in m for m in errors(RUNBOOK.replace("message:", "mesage:")))
    missing = RUNBOOK.replace('that: "${steps.measure.outputs.free >= 10}", ', "")
    assert any("missing required input 'that'" in m for m in errors(missing))
