"""The plan of a runbook definition is made once and shared: it equals a fresh one, a definition
that differs in anything (key order included) gets its own, and folding the golden recordings
with shared plans gives the states that fresh plans give."""

from __future__ import annotations

import importlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rb_common.events import Event
from rb_common.loader import load_runbook_text
from rb_engine.coordinator import ExecutionState, evolve
from rb_engine.coordinator.plan import make_plan, plan

GOLDEN = Path(__file__).resolve().parents[3] / "golden"

RUNBOOK = """
id: planned
name: planned
version: 1.0.0
owner: tests
legal_basis: tests
steps:
  - {id: c, type: transform, inputs: {z: 1, a: 2}}
  - {id: a, type: transform, depends_on: [c]}
  - {id: b, type: transform, depends_on: [c]}
  - {id: d, type: transform, depends_on: [a, b]}
"""


def definition() -> dict[str, Any]:
    runbook, _ = load_runbook_text(RUNBOOK)
    return runbook.snapshot()


def test_a_definition_is_planned_once_and_the_plan_is_what_a_fresh_one_is() -> None:
    first, second = plan(definition()), plan(definition())
    assert first is second, "the same definition: one plan"
    assert first == make_plan(definition())
    assert first.order == ("c", "a", "b", "d") and first.ready == frozenset({"c"})
    assert first.dependants == {"c": ("a", "b"), "a": ("d",), "b": ("d",), "d": ()}


def test_a_definition_that_differs_in_anything_has_its_own_plan() -> None:
    base = definition()
    reordered = {**base, "steps": [{**base["steps"][0], "inputs": {"a": 2, "z": 1}}, *base["steps"][1:]]}
    assert plan(reordered) is not plan(base)
    assert list(plan(reordered).runbook.steps[0].inputs) == ["a", "z"], "its own key order"
    assert list(plan(base).runbook.steps[0].inputs) == ["z", "a"]
    as_float = {**base, "steps": [{**base["steps"][0], "inputs": {"z": 1.0, "a": 2}}, *base["steps"][1:]]}
    assert plan(as_float) is not plan(base)
    when = datetime(2025, 1, 1, tzinfo=UTC)
    dated = {**base, "steps": [{**base["steps"][0], "inputs": {"when": when}}, *base["steps"][1:]]}
    # Not plain JSON: planned each time, never kept
    assert plan(dated) is not plan(dated)


def test_folding_with_shared_plans_gives_the_states_of_fresh_plans(monkeypatch: Any) -> None:
    recordings = [
        [Event.from_json(line) for line in path.read_text().splitlines() if line]
        for path in sorted(GOLDEN.glob("*.jsonl"))
    ]

    def fold(events: list[Event]) -> list[ExecutionState]:
        states, state = [], ExecutionState()
        for event in events:
            state = evolve(state, event)
            states.append(state)
        return states

    shared = [fold(events) for events in recordings]
    monkeypatch.setattr(importlib.import_module("rb_engine.coordinator.evolve"), "plan", make_plan)
    fresh = [fold(events) for events in recordings]
    assert shared == fresh


def test_only_the_latest_definitions_are_kept(monkeypatch: Any) -> None:
    planning = importlib.import_module("rb_engine.coordinator.plan")
    monkeypatch.setattr(planning, "PLANS_KEPT", 2)
    base = definition()
    versions = [{**base, "version": f"1.0.{n}"} for n in range(3)]
    first = [plan(v) for v in versions]
    assert plan(versions[2]) is first[2] and plan(versions[1]) is first[1]
    assert plan(versions[0]) is not first[0], "the oldest was let go"
    assert plan(versions[0]) == first[0]
    assert len(planning._PLANS) <= 2
