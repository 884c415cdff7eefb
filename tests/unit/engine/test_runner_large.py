"""The in-process runner (what `rb run` uses) on a 10,000-step chain: it finishes, and a cancel
mid-way ends it promptly. Loose bounds only: the figures belong to bench/large_runbook.py."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from rb_common.events import EventType
from rb_common.model import Runbook
from rb_common.settings import Settings
from rb_engine.clock import SystemClock
from rb_engine.coordinator import ExecutionState
from rb_engine.eventlog import FileEventStore
from rb_engine.runner import PluginExecutor, Runner, RunRequest
from rb_engine.steps.registry import default_registry

N = 10_000
# What the run costs is bounded in this process's CPU time: on a machine shared with other work
# the wall clock mostly measures the wait for a core. The wall clock only gets a timeout.
pytestmark = pytest.mark.timeout(900)


def chain(n: int) -> Runbook:
    """`transform` steps, each reading the status of the one before it through an expression."""
    steps: list[dict[str, Any]] = [{"id": "s0", "type": "transform", "inputs": {"i": 0}}]
    steps += [
        {
            "id": f"s{i}",
            "type": "transform",
            "depends_on": [f"s{i - 1}"],
            "inputs": {"i": i, "before": f"${{steps.s{i - 1}.status}}"},
        }
        for i in range(1, n)
    ]
    return Runbook.model_validate({"id": "large-chain", "name": "large chain", "steps": steps})


def runner(tmp_path: Path, on_event: Any = None) -> tuple[Runner, FileEventStore]:
    store = FileEventStore(tmp_path)
    return Runner(
        store, PluginExecutor(default_registry()), SystemClock(), Settings(), on_event=on_event
    ), store


async def test_a_10000_step_chain_runs_to_the_end(tmp_path: Path) -> None:
    run, store = runner(tmp_path)
    start = time.process_time()
    try:
        state = await asyncio.wait_for(run.run(RunRequest(runbook=chain(N))), timeout=800)
    finally:
        store.close()
    elapsed = time.process_time() - start
    assert state.status == "SUCCEEDED", state.reason
    assert state.finished == N and state.steps[f"s{N - 1}"].result == {"i": N - 1, "before": "succeeded"}
    assert elapsed < 60, f"{N} steps took {elapsed:.1f} s of CPU"


async def test_a_cancel_midway_ends_a_10000_step_chain(tmp_path: Path) -> None:
    halfway = asyncio.Event()
    seen: list[EventType] = []

    def on_event(event: Any, state: ExecutionState) -> None:
        seen.append(event.type)
        if state.finished >= N // 2:
            halfway.set()

    run, store = runner(tmp_path, on_event)
    try:
        task = asyncio.create_task(run.run(RunRequest(runbook=chain(N))))
        await asyncio.wait_for(halfway.wait(), timeout=600)
        asked = time.process_time()
        run.cancel("tests", "cancel mid-run")
        state = await asyncio.wait_for(task, timeout=120)
        elapsed = time.process_time() - asked
    finally:
        store.close()
    assert state.status == "CANCELLED"
    assert seen[-1] == EventType.EXECUTION_CANCELLED
    assert N // 2 <= sum(s.status == "SUCCEEDED" for s in state.steps.values()) < N
    assert state.finished == N  # every step ended: succeeded, cancelled or skipped
    assert elapsed < 5, f"the cancel took {elapsed:.1f} s of CPU"
