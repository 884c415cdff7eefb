"""`runbook` steps in process (`rb run`, `rb test`): a child execution per attempt, linked both
ways, its outcome the step's, the depth cap, cancellation passed down, fixtures, and replay."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from rb_common.events import Event
from rb_common.loader import load_runbook
from rb_common.ports import InMemoryEventStore
from rb_common.settings import Settings
from rb_engine.child_runs import MAX_DEPTH, child_execution_id
from rb_engine.clock import SystemClock
from rb_engine.coordinator import ExecutionState
from rb_engine.engine import run_local
from rb_engine.eventlog import FileEventStore
from rb_engine.fixtures import Fixture
from rb_engine.local_children import LocalChildren
from rb_engine.replay import Replayer
from rb_engine.runner import PluginExecutor, Runner, RunRequest
from rb_engine.steps.registry import default_registry

CHILD = """
id: child
name: Child
parameters:
  type: object
  properties: {who: {type: string}, fail: {type: boolean, default: false}}
  required: [who]
steps:
  - id: greet
    type: transform
    inputs: {message: "hello ${params.who}"}
    outputs: {message: "$.message"}
  - id: check
    type: assert
    depends_on: [greet]
    inputs: {that: "${not params.fail}", message: "asked to fail"}
"""

PARENT = """
id: parent
name: Parent
steps:
  - id: call
    type: runbook
    inputs: {runbook: child, params: {who: "${params.who}", fail: "${params.fail}"}}
    outputs: {message: "$.outputs.greet.message", child: "$.execution_id"}
  - id: after
    type: transform
    depends_on: [call]
    inputs: {got: "${steps.call.outputs.message}"}
"""

RECURSIVE = """
id: recurse
name: Recurse
steps:
  - id: again
    type: runbook
    inputs: {runbook: recurse}
"""


def write(root: Path, name: str, text: str) -> Path:
    directory = root / name
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "runbook.yaml").write_text(text, encoding="utf-8")
    return directory / "runbook.yaml"


def run(
    root: Path, name: str, params: dict[str, Any] | None = None, fixture: Fixture | None = None
) -> tuple[ExecutionState, FileEventStore]:
    settings = Settings(home=root / ".rb", runbooks_dir=root)
    path = root / name / "runbook.yaml"
    state = asyncio.run(
        run_local(load_runbook(path), settings, base_dir=path.parent, params=params, fixture=fixture)
    )
    return state, FileEventStore(settings.events_dir)


def replay_verified(events: list[Event]) -> bool:
    report = asyncio.run(Replayer(PluginExecutor(default_registry()), Settings()).replay(events))
    assert report.verified, [str(d) for d in report.deviations]
    return True


def test_a_child_runs_linked_both_ways_and_its_outputs_are_the_steps(tmp_path: Path) -> None:
    write(tmp_path, "child", CHILD)
    write(tmp_path, "parent", PARENT)
    state, store = run(tmp_path, "parent", {"who": "ops", "fail": False})
    assert state.status == "SUCCEEDED", state.reason
    call = state.steps["call"]
    child_id = call.outputs["child"]
    assert call.outputs["message"] == "hello ops"
    assert child_id == child_execution_id(f"{state.execution_id}:call:1")
    assert state.steps["after"].outputs == {} and state.steps["after"].status == "SUCCEEDED"
    child_events = store.read(child_id)
    requested = child_events[0].data
    assert requested["parent"] == {"execution_id": state.execution_id, "step_id": "call"}
    assert requested["depth"] == 1
    assert requested["trigger"]["type"] == "runbook"
    assert requested["actor"] == requested["trigger"]["actor"] == "cli"  # the parent's requester
    assert requested["params"] == {"who": "ops", "fail": False}
    assert child_events[-1].type == "execution.succeeded"
    [succeeded] = [e for e in store.read(state.execution_id) if e.type == "step.succeeded"][:1]
    assert succeeded.data["meta"]["child_execution_id"] == child_id
    assert replay_verified(store.read(state.execution_id))
    assert replay_verified(child_events)


def test_a_failed_child_fails_the_step_naming_the_child(tmp_path: Path) -> None:
    write(tmp_path, "child", CHILD)
    write(tmp_path, "parent", PARENT)
    state, store = run(tmp_path, "parent", {"who": "ops", "fail": True})
    assert state.status == "FAILED"
    child_id = child_execution_id(f"{state.execution_id}:call:1")
    error = state.steps["call"].error or ""
    assert error.startswith(f"child execution {child_id} of child ended failed: step 'check' failed")
    assert state.steps["call"].attempt == 1  # not retried: the child's outcome is final
    assert store.read(child_id)[-1].type == "execution.failed"
    assert replay_verified(store.read(state.execution_id))


def test_bad_params_or_an_unknown_runbook_fail_the_step_without_a_child(tmp_path: Path) -> None:
    write(tmp_path, "child", CHILD)
    write(tmp_path, "parent", PARENT.replace('who: "${params.who}", ', ""))
    state, store = run(tmp_path, "parent", {"fail": False})
    assert "sub-runbook child not started" in (state.steps["call"].error or "")
    assert store.execution_ids() == [state.execution_id]
    write(tmp_path, "parent", PARENT.replace("runbook: child", "runbook: nowhere"))
    state, _ = run(tmp_path, "parent", {"who": "x", "fail": False})
    assert "no runbook 'nowhere'" in (state.steps["call"].error or "")


def test_a_self_recursive_runbook_stops_cleanly_at_depth_six(tmp_path: Path) -> None:
    write(tmp_path, "recurse", RECURSIVE)
    state, store = run(tmp_path, "recurse")
    assert state.status == "FAILED"
    ids = store.execution_ids()
    assert len(ids) == MAX_DEPTH + 1  # depths 0..5 ran; depth 6 never started
    chain = [state.execution_id]
    for _ in range(MAX_DEPTH):
        chain.append(child_execution_id(f"{chain[-1]}:again:1"))
    assert set(chain) == set(ids)
    deepest = fold_of(store, chain[-1])
    assert deepest.steps["again"].error == "sub-runbook depth 6 exceeds the cap of 5"
    assert store.read(chain[-1])[0].data["depth"] == 5
    for execution_id in chain:
        assert store.read(execution_id)[-1].type == "execution.failed"
        assert replay_verified(store.read(execution_id))


def test_max_depth_lowers_the_cap(tmp_path: Path) -> None:
    write(tmp_path, "recurse", RECURSIVE.replace("{runbook: recurse}", "{runbook: recurse, max_depth: 2}"))
    state, store = run(tmp_path, "recurse")
    assert len(store.execution_ids()) == 3
    assert state.status == "FAILED"
    assert "sub-runbook depth 3 exceeds the cap of 2" in (state.reason or "")


def fold_of(store: FileEventStore, execution_id: str) -> ExecutionState:
    from rb_engine.coordinator import fold

    return fold(store.read(execution_id))


def test_cancelling_the_parent_cancels_the_child(tmp_path: Path) -> None:
    write(
        tmp_path, "slow", "id: slow\nname: Slow\nsteps:\n  - {id: nap, type: wait, inputs: {seconds: 60}}\n"
    )
    parent_path = write(
        tmp_path,
        "parent",
        "id: parent\nname: P\nsteps:\n  - {id: call, type: runbook, inputs: {runbook: slow}}\n",
    )
    store = InMemoryEventStore()
    settings = Settings(home=tmp_path / ".rb")
    plugins = PluginExecutor(default_registry())
    napping = asyncio.Event()

    def watch(event: Event, state: ExecutionState) -> None:
        if event.type in ("step.started", "step.waiting") and event.data["step_id"] == "nap":
            napping.set()

    def child_runner(base_dir: Path) -> Runner:
        return Runner(store, plugins, SystemClock(), settings, children=children, on_event=watch)

    children = LocalChildren([tmp_path], child_runner)
    parent = Runner(store, plugins, SystemClock(), settings, children=children)

    async def scenario() -> tuple[ExecutionState, float]:
        running = asyncio.ensure_future(parent.run(RunRequest(runbook=load_runbook(parent_path))))
        await asyncio.wait_for(napping.wait(), 10)
        start = time.monotonic()
        parent.cancel("key:ops", "enough")
        state = await asyncio.wait_for(running, 10)
        return state, time.monotonic() - start

    state, took = asyncio.run(scenario())
    assert state.status == "CANCELLED"
    assert took < 1.0
    child_id = child_execution_id(f"{state.execution_id}:call:1")
    child = store.read(child_id)
    assert child[-1].type == "execution.cancelled"
    [requested] = [e for e in child if e.type == "execution.cancel_requested"]
    assert requested.data == {"requested_via": "parent", "reason": "its parent step call was cancelled"}
    assert replay_verified(child)
    assert replay_verified(store.read(state.execution_id))


def test_fixtures_script_child_runs_and_keep_the_depth_cap(tmp_path: Path) -> None:
    write(tmp_path, "parent", PARENT)
    fixture = Fixture.model_validate(
        {
            "params": {"who": "ops", "fail": False},
            "children": {
                "call": {"status": "succeeded", "outputs": {"greet": {"message": "hi from fixture"}}}
            },
        }
    )
    state, store = run(tmp_path, "parent", fixture=fixture)
    assert state.status == "SUCCEEDED", state.reason
    assert state.steps["call"].outputs["message"] == "hi from fixture"
    assert store.execution_ids() == [state.execution_id]  # scripted: no child ran
    failing = Fixture.model_validate(
        {"params": {"who": "ops", "fail": False}, "children": {"call": {"status": "aborted", "reason": "no"}}}
    )
    state, _ = run(tmp_path, "parent", fixture=failing)
    assert state.status == "FAILED"
    assert "of child ended aborted: no" in (state.steps["call"].error or "")
    deep = Fixture.model_validate(
        {
            "params": {"who": "ops", "fail": False},
            "trigger": {"type": "runbook", "depth": 5},
            "children": {"call": {"status": "succeeded"}},
        }
    )
    state, _ = run(tmp_path, "parent", fixture=deep)
    assert state.steps["call"].error == "sub-runbook depth 6 exceeds the cap of 5"
    missing, _ = run(
        tmp_path, "parent", fixture=Fixture.model_validate({"params": {"who": "x", "fail": False}})
    )
    assert "or children.call" in (missing.steps["call"].error or "")


def test_fixtures_script_ai_answers_validated_against_the_schema(tmp_path: Path) -> None:
    write(
        tmp_path,
        "ask",
        """
id: ask
name: Ask
steps:
  - id: q
    type: ai
    inputs: {prompt: "hi", schema: {type: object, required: [n], properties: {n: {type: integer}}}}
    outputs: {n: "$.json.n"}
""",
    )
    state, _ = run(tmp_path, "ask", fixture=Fixture.model_validate({"ai": {"q": {"json": {"n": 3}}}}))
    assert state.status == "SUCCEEDED", state.reason
    assert state.steps["q"].outputs == {"n": 3}
    state, _ = run(tmp_path, "ask", fixture=Fixture.model_validate({"ai": {"q": {"text": "three"}}}))
    assert "not JSON" in (state.steps["q"].error or "")
    with pytest.raises(ValueError, match="an ai stub has"):
        Fixture.model_validate({"ai": {"q": {}}})
