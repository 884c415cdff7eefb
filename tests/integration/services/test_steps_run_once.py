"""Steps run once, whatever they last (issue 10): real `rb serve` processes on real NATS.

The step under test is a shell step that takes an exclusive flock for as long as any of its
processes lives (a backgrounded grandchild holds it too), and appends to a marks file:
`start <idempotency key>`, then `late` (from the grandchild) and `end`. A copy that finds the lock
taken writes `overlap`: two copies ran at the same time. A copy killed mid-step writes only
`start`; if any of its processes survived, a stray `late` shows it.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from services_support import Services, publish_trigger, wait_for_event, wait_terminal

from rb_common.bus import Bus
from rb_common.events import Event, EventType
from rb_engine.coordinator import fold

pytestmark = pytest.mark.integration


def locked_step_runbook(runbook_id: str, marks: Path, seconds: float) -> str:
    lock = marks.with_suffix(".lock")
    script = (
        f"exec 9>>{lock}; flock -n 9 || {{ echo overlap >> {marks}; exit 1; }}; "
        f'echo "start $RB_IDEMPOTENCY_KEY" >> {marks}; '
        f"(sleep {seconds}; echo late >> {marks}) & wait; "
        f"echo end >> {marks}"
    )
    command = json.dumps(["sh", "-c", script])
    return (
        f"id: {runbook_id}\nname: Long step\nsteps:\n"
        f"  - {{id: long, type: shell, timeout: 2m, retry: {{max_attempts: 1}}, inputs: {{command: {command}}}}}\n"
    )


def marks_of(marks: Path) -> list[str]:
    return marks.read_text().splitlines() if marks.exists() else []


async def poll(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> float:
    """Wait until `predicate()` holds; returns the monotonic time it did."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)
    return time.monotonic()


def held_groups(home: Path, pid: int) -> list[int]:
    """The process groups of running shell steps a worker process lists in its holdings file."""
    try:
        record = json.loads((home / "workers" / f"{pid}.json").read_text())
    except (OSError, ValueError):
        return []
    return [pgid for pgid, _ in record.get("groups", [])]


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def step_events(events: list[Event], type_: EventType) -> list[Event]:
    return [e for e in events if e.type == type_ and e.data.get("step_id") == "long"]


@pytest.mark.parametrize("where", ["executor", "worker"])
async def test_a_step_three_times_longer_than_ack_wait_runs_once(
    services: Services, bus: Bus, tmp_path: Path, step_dir: Path, where: str
) -> None:
    marks = step_dir / "marks.txt"
    env = {"RB_TASK_ACK_WAIT": "2"}
    if where == "executor":
        services.start("executor", **env)
    else:
        services.start("executor", RB_EXECUTOR_WORKERS="false", **env)
        services.start("worker", **env)
    execution_id = await publish_trigger(bus, locked_step_runbook(f"long-{where}", marks, seconds=6.5))
    events = await wait_terminal(bus, execution_id, timeout=40)
    assert fold(events).status == "SUCCEEDED", services.logs()
    lines = marks_of(marks)
    assert [line.split()[0] for line in lines] == ["start", "late", "end"], lines
    [succeeded] = step_events(events, EventType.STEP_SUCCEEDED)
    assert "delivery" not in succeeded.data  # the first delivery: recorded as before
    assert len(step_events(events, EventType.STEP_STARTED)) == 1


async def test_a_step_whose_worker_is_killed_runs_again_once_on_another(
    services: Services, bus: Bus, tmp_path: Path, step_dir: Path
) -> None:
    marks = step_dir / "marks.txt"
    env = {"RB_TASK_ACK_WAIT": "2"}
    services.start("executor", RB_EXECUTOR_WORKERS="false", **env)
    workers = [services.start("worker", **env), services.start("worker", **env)]
    execution_id = await publish_trigger(bus, locked_step_runbook("kill-worker", marks, seconds=6))
    await poll(lambda: any(held_groups(tmp_path, w.pid) for w in workers), 20, "a worker running the step")
    [holder] = [w for w in workers if held_groups(tmp_path, w.pid)]
    groups = held_groups(tmp_path, holder.pid)
    await poll(lambda: len(marks_of(marks)) == 1, 10, "the step to start")
    services.kill(holder)
    # The step's processes die with their worker, at once, not when another worker comes along.
    await poll(
        lambda: not any(group_alive(g) for g in groups), 3, "the killed worker's step processes to die"
    )
    events = await wait_terminal(bus, execution_id, timeout=40)
    assert fold(events).status == "SUCCEEDED", services.logs()
    lines = marks_of(marks)
    assert [line.split()[0] for line in lines] == ["start", "start", "late", "end"], lines
    assert len({line for line in lines if line.startswith("start")}) == 1, "the same idempotency key"
    [succeeded] = step_events(events, EventType.STEP_SUCCEEDED)
    assert succeeded.data["delivery"] == 2
    assert [e.data.get("delivery", 1) for e in step_events(events, EventType.STEP_STARTED)][-1] == 2


async def test_killing_the_executor_mid_step_never_runs_two_copies_at_once(
    services: Services, bus: Bus, tmp_path: Path, step_dir: Path
) -> None:
    marks = step_dir / "marks.txt"
    env = {"RB_TASK_ACK_WAIT": "5"}
    executor = services.start("executor", **env)
    execution_id = await publish_trigger(bus, locked_step_runbook("kill-executor", marks, seconds=20))
    await wait_for_event(
        bus, execution_id, lambda e: e.type == EventType.STEP_STARTED and e.data["step_id"] == "long"
    )
    await poll(lambda: len(marks_of(marks)) == 1, 10, "the step to start")
    groups = held_groups(tmp_path, executor.pid)
    assert groups, "the executor lists the step's process group"
    services.kill(executor)
    killed = time.monotonic()
    await poll(
        lambda: not any(group_alive(g) for g in groups), 3, "the step's processes to die with the executor"
    )
    services.start("executor", **env)
    again = await poll(lambda: len(marks_of(marks)) >= 2, 5 + 5, "the step to run again", interval=0.1)
    assert again - killed <= 5 + 5
    events = await wait_terminal(bus, execution_id, timeout=40)
    assert fold(events).status == "SUCCEEDED", services.logs()
    lines = marks_of(marks)
    assert [line.split()[0] for line in lines] == ["start", "start", "late", "end"], lines
    [succeeded] = step_events(events, EventType.STEP_SUCCEEDED)
    assert succeeded.data["delivery"] == 2
    started = step_events(events, EventType.STEP_STARTED)
    assert [e.data.get("delivery", 1) for e in started] == [1, 2], "each delivery is in the record"
    assert len(list((tmp_path / "workers").glob("*.json"))) == 1, "the dead executor's file was reaped"
