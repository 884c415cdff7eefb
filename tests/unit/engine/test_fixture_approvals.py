"""Fixtures script approvals for `rb test` (approve / reject / timeout), and `rb fixture export`
writes them back: the example pack rb-010-approval-gate passes offline, and an exported
fixture reproduces its run."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from rb_common.events import Event
from rb_common.loader import load_runbook
from rb_common.params import resolve_params
from rb_common.ports import InMemoryEventStore
from rb_common.settings import Settings
from rb_engine.clock import FakeClock
from rb_engine.coordinator import ExecutionState
from rb_engine.export import export_fixture
from rb_engine.fixtures import Fixture, FixtureExecutor, load_fixture
from rb_engine.replay import Replayer
from rb_engine.result import canonical_result
from rb_engine.runner import PluginExecutor, Runner, RunRequest
from rb_engine.steps.registry import default_registry
from rb_engine.testing import check_execution, load_expected, load_pack

PACK = Path(__file__).resolve().parents[3] / "runbooks" / "rb-010-approval-gate"


async def run(fixture: Fixture, execution_id: str) -> tuple[ExecutionState, list[Event]]:
    runbook = load_runbook(PACK / "runbook.yaml")
    store = InMemoryEventStore()
    runner = Runner(
        store,
        FixtureExecutor(PluginExecutor(default_registry()), fixture),
        FakeClock(fixture.clock),
        Settings(),
        decide_approval=fixture.decide_approval,
    )
    request = RunRequest(
        runbook=runbook,
        params=resolve_params(runbook, fixture.params),
        trigger=fixture.trigger,
        actor=str(fixture.trigger.get("actor", "rb-test")),
        execution_id=execution_id,
    )
    state = await runner.run(request)
    return state, store.read(execution_id)


@pytest.mark.parametrize("index", [0, 1, 2])
async def test_the_example_pack_passes_and_its_runs_replay_and_export(index: int) -> None:
    pack = load_pack(PACK)
    scenario = pack.scenarios[index]
    fixture = load_fixture(PACK / scenario.fixture)
    state, events = await run(fixture, f"pack-{index}")
    runbook = load_runbook(PACK / "runbook.yaml")
    expected = ("expected", load_expected(PACK / scenario.expected)) if scenario.expected else None
    checks = check_execution(runbook, state, scenario.expect, expected)
    assert all(c.ok for c in checks), [f"{c.label}: {c.detail}" for c in checks if not c.ok]
    report = await Replayer(PluginExecutor(default_registry()), Settings()).replay(events)
    assert report.verified, [str(d) for d in report.deviations]

    exported, result = export_fixture(events)
    assert exported["approvals"]["gate"] == fixture.approvals["gate"].model_dump(exclude_defaults=True)
    again, _ = await run(Fixture.model_validate(exported), f"again-{index}")
    assert canonical_result(again) == result


def test_an_approval_script_says_exactly_one_thing() -> None:
    with pytest.raises(ValidationError, match="one of 'approve', 'reject' or 'timeout: true'"):
        Fixture.model_validate({"approvals": {"gate": {"approve": "alice", "reject": "bob"}}})
    with pytest.raises(ValidationError):
        Fixture.model_validate({"approvals": {"gate": {}}})
    two = Fixture.model_validate({"approvals": {"gate": {"approve": ["alice", "bob"]}}})
    assert two.approvals["gate"].approve == ["alice", "bob"]
