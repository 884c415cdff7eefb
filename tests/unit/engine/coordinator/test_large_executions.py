"""The coordinator at scale: what one decision and one event cost must not grow with the
number of steps already finished (issue 15, "Large runbooks")."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from functools import lru_cache
from typing import Any

import pytest
from harness import T0, Drive

from rb_common.events import Event, EventType
from rb_common.model import Runbook
from rb_common.payloads import StepSkipped, StepsSkipped
from rb_common.settings import Settings
from rb_engine.coordinator import ExecutionState, RunStep, evolve, fold
from rb_engine.coordinator.applier import Fact, requested
from rb_engine.coordinator.commands import CancelStep, Emit
from rb_engine.coordinator.decide import decide
from rb_engine.replay import Replayer
from rb_engine.runner import PluginExecutor
from rb_engine.steps.registry import default_registry

FAN = 10  # steps made ready at once by the end of the chain
# Building a 10,000-step history takes ~20 s on an idle machine, minutes on a loaded one.
pytestmark = pytest.mark.timeout(900)
CONCURRENCY = 4


def chain_then_fan(n: int) -> Runbook:
    """A chain s0..s<n-1>, then FAN steps that all read the chain's last output."""
    steps: list[dict[str, Any]] = [{"id": "s0", "type": "transform", "inputs": {"i": 0}}]
    steps += [
        {"id": f"s{i}", "type": "transform", "depends_on": [f"s{i - 1}"], "inputs": {"i": i}}
        for i in range(1, n)
    ]
    steps += [
        {
            "id": f"r{j}",
            "type": "transform",
            "depends_on": [f"s{n - 1}"],
            "inputs": {"last": f"${{steps.s{n - 1}.outputs.i}}", "j": j},
        }
        for j in range(FAN)
    ]
    return Runbook.model_validate(
        {"id": "large", "name": "large", "defaults": {"concurrency": CONCURRENCY}, "steps": steps}
    )


def after_chain(n: int) -> tuple[ExecutionState, Drive]:
    """The state just after the chain's last step succeeded, before anything is decided on it:
    n finished steps, FAN ready ones, nothing running."""
    d = finished_chain(n)
    last = next(
        i
        for i, e in enumerate(d.events)
        if e.type == EventType.STEP_SUCCEEDED and e.data["step_id"] == f"s{n - 1}"
    )
    state = fold(d.events[: last + 1])
    assert state.finished == n and sorted(state.ready) == sorted(f"r{j}" for j in range(FAN))
    return state, d


def cheapest(*fns: Callable[[], object], repeat: int = 40, number: int = 20) -> list[float]:
    """The least time of `repeat` rounds of `number` calls of each of `fns`, their rounds taken
    in turns: the cost without the noise of a loaded machine (other processes only ever add
    time, and a swing of the load hits both alike)."""
    best = [float("inf")] * len(fns)
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            for _ in range(number):
                fn()
            best[i] = min(best[i], time.perf_counter() - start)
    return [b / number for b in best]


def started(state: ExecutionState, step_id: str) -> Event:
    return Event.sealed(
        prev_hash=state.last_hash,
        id="probe",
        execution_id=state.execution_id,
        seq=state.seq + 1,
        type=EventType.STEP_SUCCEEDED,
        time=T0 + timedelta(hours=1),
        actor="tests",
        data={"step_id": step_id, "attempt": 1, "phase": "main", "result": {}, "outputs": {}},
    )


def test_decide_costs_the_same_after_10000_finished_steps_as_after_100() -> None:
    small, _ = after_chain(100)
    large, _ = after_chain(10_000)
    # The same decisions on both: the first CONCURRENCY of the fan, reading the chain's end.
    want = [(c.step_id, c.inputs) for c in decide(small) if isinstance(c, RunStep)]
    got = [(c.step_id, c.inputs) for c in decide(large) if isinstance(c, RunStep)]
    assert [sid for sid, _ in want] == [sid for sid, _ in got] == [f"r{j}" for j in range(CONCURRENCY)]
    assert got[0][1] == {"last": 9_999, "j": 0} and want[0][1] == {"last": 99, "j": 0}

    t_small, t_large = cheapest(lambda: decide(small), lambda: decide(large))
    assert t_large < 2 * t_small, f"decide: {t_large * 1e6:.0f} µs at 10,000 vs {t_small * 1e6:.0f} µs at 100"


def test_an_event_costs_the_same_after_10000_finished_steps_as_after_100() -> None:
    probes = []
    for n in (100, 10_000):
        state, _ = after_chain(n)
        running = evolve(state, _scheduled(state, "r0"))
        event = started(running, "r0")
        after = evolve(running, event)
        assert after.steps["r0"].status == "SUCCEEDED" and running.steps["r0"].status == "SCHEDULED"
        probes.append(lambda running=running, event=event: evolve(running, event))
    t_small, t_large = cheapest(*probes)
    assert t_large < 2 * t_small, f"evolve: {t_large * 1e6:.0f} µs at 10,000 vs {t_small * 1e6:.0f} µs at 100"


def _scheduled(state: ExecutionState, step_id: str) -> Event:
    [command] = [c for c in decide(state) if isinstance(c, RunStep) and c.step_id == step_id]
    return Event.sealed(
        prev_hash=state.last_hash,
        id="scheduled",
        execution_id=state.execution_id,
        seq=state.seq + 1,
        type=EventType.STEP_SCHEDULED,
        time=T0 + timedelta(minutes=59),
        actor="tests",
        data=command.event_data(),
    )


@lru_cache(maxsize=2)
def finished_chain(n: int) -> Drive:
    """chain_then_fan(n) run to the end (states are values: tests may share it)."""
    return running_chain(n, hang="")


def cancel_fact() -> list[Fact]:
    return [Fact(EventType.EXECUTION_CANCEL_REQUESTED, {"requested_via": "api"}, "tests")]


def running_chain(n: int, hang: str, wind_down: str | None = "together") -> Drive:
    """A drive of chain_then_fan(n) whose steps succeed until `hang` is running; `wind_down` as
    execution.requested records it (None: as recordings before `steps.skipped` did)."""
    d = Drive("")  # driven here, not by Drive.run
    data = {"runbook": chain_then_fan(n).snapshot(), "params": {}, "facts": {}, "waits": "timers"}
    if wind_down is not None:
        data["wind_down"] = wind_down
    todo = list(d.apply(requested(d.state, data, "tests")).run)
    while todo:
        command = todo.pop(0)
        if command.step_id == hang:
            continue
        outputs = command.inputs
        report = {
            "step_id": command.step_id,
            "attempt": 1,
            "phase": "main",
            "result": outputs,
            "outputs": outputs,
        }
        todo += d.report(EventType.STEP_SUCCEEDED, report).run
    return d


def test_decide_first_is_a_prefix_of_the_full_decision() -> None:
    """The applier asks for the first command only: it must be the full list's first."""
    state, _ = after_chain(100)
    assert decide(state, first=True) == decide(state)[:1]
    pending = [f"s{i}" for i in range(51, 100)] + [f"r{j}" for j in range(FAN)]
    # Recorded before `wind_down: together`: one step.skipped per step, in the plan's order.
    d = running_chain(100, "s50", wind_down=None)
    assert decide(d.state, first=True) == decide(d.state)[:1] == []
    winding = evolve(d.state, d.seal(d.state, EventType.EXECUTION_CANCEL_REQUESTED, {}, "tests"))
    full = decide(winding)
    assert decide(winding, first=True) == full[:1] == [CancelStep("s50")]
    skipped = [c.payload.step_id for c in full if isinstance(c, Emit) and isinstance(c.payload, StepSkipped)]
    assert skipped == pending
    # Now: the pending steps in one steps.skipped, then the running one cancelled.
    d = running_chain(100, "s50")
    winding = evolve(d.state, d.seal(d.state, EventType.EXECUTION_CANCEL_REQUESTED, {}, "tests"))
    full = decide(winding)
    reason = "execution is ending (cancel requested)"
    assert full == [Emit(StepsSkipped(step_ids=pending, reason=reason)), CancelStep("s50")]
    assert decide(winding, first=True) == full[:1]


def test_a_cancelled_10000_step_execution_winds_down_in_order_and_quickly() -> None:
    """A cancel mid-run skips every pending step (one steps.skipped, in the plan's order) and
    cancels the running one, through the one applier, in a handful of events."""
    n = 10_000
    events = finished_chain(n).events
    at = next(
        i for i, e in enumerate(events) if e.type == EventType.STEP_SCHEDULED and e.data["step_id"] == "s5000"
    )
    d = Drive("", events=list(events[: at + 1]), state=fold(events[: at + 1]))
    assert d.state.steps["s5000"].status == "SCHEDULED" and d.state.finished == 5_000
    before = len(d.events)
    start = time.process_time()  # this process's work, not the wait for a core
    applied = d.apply(cancel_fact())
    elapsed = time.process_time() - start
    assert d.state.status == "CANCELLED" and applied.cancel == ["s5000"]
    ended = d.events[before:]
    assert [e.type for e in ended[-2:]] == [EventType.KPI_EVALUATED, EventType.EXECUTION_CANCELLED]
    stopped = [e.data["step_id"] for e in ended if e.type == EventType.STEP_FAILED]
    skipped = [e.data["step_ids"] for e in ended if e.type == EventType.STEPS_SKIPPED]
    assert stopped == ["s5000"]
    assert skipped == [[f"s{i}" for i in range(5_001, n)] + [f"r{j}" for j in range(FAN)]]
    assert d.state.finished == n + FAN
    assert all(
        d.state.steps[f"s{i}"].skip_reason == "execution is ending (cancel requested)" for i in (5_001, n - 1)
    )
    assert len(ended) == 5, [e.type for e in ended]  # requested, skipped, cancelled step, kpis, end
    assert elapsed < 5, f"the wind-down of 5,000 steps took {elapsed:.1f} s of CPU"


def test_steps_skipped_folds_as_one_step_skipped_per_step() -> None:
    """The bulk fold of steps.skipped leaves the state one step.skipped per step would."""
    d = running_chain(100, "s50")
    ids = [f"r{j}" for j in range(FAN)] + [f"s{i}" for i in range(51, 100)]  # not in order, on purpose
    reason = "execution is ending (cancel requested)"
    at = d.state.now
    bulk = evolve(d.state, _event(d.state, EventType.STEPS_SKIPPED, {"step_ids": ids, "reason": reason}))
    one_by_one = d.state
    for sid in ids:
        one_by_one = evolve(
            one_by_one, _event(one_by_one, EventType.STEP_SKIPPED, {"step_id": sid, "reason": reason})
        )
    same = ("steps", "ready", "active", "finished", "frontier", "order")
    assert {k: getattr(bulk, k) for k in same} == {k: getattr(one_by_one, k) for k in same}
    assert bulk.finished == 50 + len(ids) and bulk.frontier == 50 and at is not None
    assert list(bulk.steps) == list(d.state.steps)


def _event(state: ExecutionState, type_: EventType, data: dict[str, Any]) -> Event:
    return Event.sealed(
        prev_hash=state.last_hash,
        id=f"x{state.seq + 1}",
        execution_id=state.execution_id,
        seq=state.seq + 1,
        type=type_,
        time=T0 + timedelta(hours=3),
        actor="tests",
        data=data,
    )


async def test_a_recorded_bulk_wind_down_replays_without_deviation() -> None:
    """Replay (rb_engine.replay) checks steps.skipped against decide() like any decision."""
    d = running_chain(100, "s50")
    d.apply(cancel_fact())
    assert d.state.status == "CANCELLED"
    assert [e.type for e in d.events].count(EventType.STEPS_SKIPPED) == 1
    report = await Replayer(PluginExecutor(default_registry()), Settings()).replay(d.events)
    # The drive reports each step's inputs as its outputs (the fan reads them), which these
    # transform steps do not declare: replay's output checks say so; every decision matches.
    assert [x for x in report.deviations if not x.field.startswith("outputs.")] == []
    assert report.state.steps == d.state.steps
