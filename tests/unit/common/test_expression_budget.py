"""Expressions have a budget enforced while they evaluate (steps and an allocation estimate):
a bomb stops early, with a clear error and bounded memory; real expressions never notice it."""

from __future__ import annotations

import asyncio
import time
import tracemalloc
from typing import Any

import pytest

from rb_common.errors import ExpressionError
from rb_common.expressions import MAX_ALLOCATED_BYTES, MAX_STEPS, BudgetExceeded, evaluate, render
from rb_common.loader import load_runbook_text
from rb_common.ports import InMemoryEventStore
from rb_common.settings import Settings
from rb_engine.clock import FakeClock
from rb_engine.runner import PluginExecutor, Runner, RunRequest
from rb_engine.steps.registry import default_registry

# The generous bound this test holds the evaluator to: the budget is 32 MiB of estimated
# allocation; Python's real footprint for it (object headers, the list growing) stays well under
# twice that. Before the budget the bomb peaked at ~954 MiB (bench/expression_budget.py).
PEAK_BOUND = 2 * MAX_ALLOCATED_BYTES

BOMBS = {
    "the issue's comprehension": "['a' * 99999 for x in [1] * 9999]",
    "lists in a comprehension": "[[1] * 9999 for x in [1] * 9999]",
    "concatenation in a comprehension": "[('a' * 60000) + ('b' * 99) for x in [1] * 9999]",
    "upper of a big list": "[upper(['a' * 9999] * 9999) for x in [1] * 99]",
    "json of shared references": "[json(['a' * 9999] * 9999) for x in [1] * 99]",
    "starred copies": "[[*(['x'] * 99999), *(['y'] * 99999)] for i in [1] * 999]",
    "slices of a big string": "[('a' * 99999)[::-1] for x in [1] * 9999]",
    "sorted copies": "[sorted([1] * 99999) for x in [1] * 9999]",
    "dict comprehension of big values": "{x: 'v' * 99999 for x in [1] * 9999}",
    "set of big strings": "{('a' * 99999) + str(x) for x in [1] * 9999}",
}


def _peak(source: str, context: dict[str, Any] | None = None) -> tuple[Exception, int, float]:
    tracemalloc.start()
    tracemalloc.reset_peak()
    start = time.perf_counter()
    try:
        evaluate(source, context or {})
    except ExpressionError as exc:
        error: Exception = exc
    else:
        raise AssertionError(f"{source} was evaluated")
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return error, peak, time.perf_counter() - start


@pytest.mark.parametrize("source", list(BOMBS.values()), ids=list(BOMBS))
def test_a_bomb_stops_early_with_bounded_memory(source: str) -> None:
    error, peak, seconds = _peak(source)
    assert isinstance(error, BudgetExceeded), error
    assert "would allocate more than 32 MiB" in str(error)
    assert peak < PEAK_BOUND, f"peak {peak / 2**20:.1f} MiB"
    assert seconds < 2.0


def test_the_step_budget_stops_long_loops() -> None:
    body = ", ".join(["x"] * 300)  # 300 nodes per iteration, 9999 iterations
    error, peak, seconds = _peak(f"[[{body}] for x in [1] * 9999]")
    assert isinstance(error, BudgetExceeded)
    assert f"more than {MAX_STEPS} evaluation steps" in str(error)
    assert seconds < 2.0 and peak < PEAK_BOUND


def test_bombs_through_render_are_expression_errors() -> None:
    with pytest.raises(BudgetExceeded, match="would allocate"):
        render("x=${['a' * 99999 for x in [1] * 9999]}", {})


def test_real_expressions_on_large_data_stay_within_the_budget() -> None:
    entities = [{"id": f"e{i}", "name": f"entity {i}", "score": i % 97} for i in range(9000)]
    ctx = {"steps": {"fetch": {"outputs": {"entities": entities, "text": "x" * 1_000_000}}}}
    assert evaluate("len(steps.fetch.outputs.entities)", ctx) == 9000
    assert len(evaluate("[e.id for e in steps.fetch.outputs.entities if e.score > 10]", ctx)) > 7000
    assert evaluate("sorted([e.score for e in steps.fetch.outputs.entities])[-1]", ctx) == 96
    assert evaluate("len(upper(steps.fetch.outputs.text))", ctx) == 1_000_000
    assert evaluate("sum([e.score for e in steps.fetch.outputs.entities])", ctx) > 0
    assert len(evaluate("json(steps.fetch.outputs.entities)", ctx)) > 100_000


def test_a_bomb_in_step_inputs_fails_the_step_cleanly() -> None:
    runbook, _ = load_runbook_text("""
id: bomb
name: Bomb
steps:
  - {id: ok, type: transform, inputs: {n: 1}}
  - id: boom
    type: transform
    depends_on: [ok]
    inputs: {big: "${['a' * 99999 for x in [1] * 9999]}"}
""")
    runner = Runner(
        InMemoryEventStore(),
        PluginExecutor(default_registry()),
        FakeClock("2025-01-01T00:00:00Z"),
        Settings(),
    )
    tracemalloc.start()
    try:
        state = asyncio.run(runner.run(RunRequest(runbook=runbook)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert state.status == "FAILED"
    step = state.steps["boom"]
    assert step.status == "FAILED" and "would allocate more than 32 MiB" in (step.error or "")
    assert peak < PEAK_BOUND, f"peak {peak / 2**20:.1f} MiB"
