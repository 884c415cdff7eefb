"""The executor service as an OS process on real NATS: crash recovery and replicas."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
from services_support import Services, publish_trigger, wait_for_event, wait_terminal

from rb_common.bus import Bus
from rb_common.events import EventType
from rb_engine.coordinator import fold

pytestmark = pytest.mark.integration


def marker_runbook(runbook_id: str, marks: Path, slow_seconds: float = 0, *, slow_once: bool = False) -> str:
    """Three shell steps that each append their name to `marks` when they run; "two" then sleeps
    `slow_seconds` (if `slow_once`, only the first time it runs)."""

    def step(name: str, deps: str, sleep: float = 0) -> str:
        pause = f"{sleep} if open(p).read().split().count({name!r}) == 1 else 0" if slow_once else str(sleep)
        code = f"import time; p = {str(marks)!r}; open(p, 'a').write({name!r} + chr(10)); time.sleep({pause})"
        return (
            f"  - {{id: {name}, type: shell, depends_on: [{deps}], retry: {{max_attempts: 1}},"
            f" inputs: {{command: [python3, -c, {code!r}]}}}}\n"
        )

    return (
        f"id: {runbook_id}\nname: Markers\nsteps:\n"
        + step("one", "")
        + step("two", "one", slow_seconds)
        + step("three", "two")
    )


def assert_clean_stream(events: list) -> None:
    assert [e.seq for e in events] == list(range(1, len(events) + 1)), "no gap, no duplicate seq"
    assert len({e.id for e in events}) == len(events)
    done = [
        (e.data["step_id"], e.data["attempt"], e.data.get("phase"))
        for e in events
        if e.type in (EventType.STEP_SUCCEEDED, EventType.STEP_FAILED)
    ]
    assert len(done) == len(set(done)), f"an attempt finished twice: {done}"


async def test_execution_completes_after_the_executor_is_killed_mid_step(
    services: Services, bus: Bus, step_dir: Path
) -> None:
    marks = step_dir / "marks.txt"
    executor = services.start("executor")
    execution_id = await publish_trigger(bus, marker_runbook("kill-test", marks, slow_seconds=2))
    await wait_for_event(
        bus, execution_id, lambda e: e.type == EventType.STEP_STARTED and e.data["step_id"] == "two"
    )
    services.kill(executor)
    services.start("executor")
    events = await wait_terminal(bus, execution_id, timeout=60)
    state = fold(events)
    assert state.status == "SUCCEEDED", services.logs()
    runs = marks.read_text().split()
    assert runs.count("one") == 1, "a step that had succeeded ran again"
    assert runs.count("three") == 1
    assert 1 <= runs.count("two") <= 2  # the interrupted step may run again: at-least-once
    assert_clean_stream(events)


async def test_two_replicas_share_the_work_without_running_a_step_twice(
    services: Services, bus: Bus, step_dir: Path
) -> None:
    services.start("executor")
    services.start("executor")
    marks = [step_dir / f"marks-{i}.txt" for i in range(12)]
    ids = [await publish_trigger(bus, marker_runbook(f"replicas-{i}", m)) for i, m in enumerate(marks)]
    results = await asyncio.gather(*(wait_terminal(bus, i, timeout=60) for i in ids))
    for events, m in zip(results, marks, strict=True):
        assert fold(events).status == "SUCCEEDED", services.logs()
        assert sorted(m.read_text().split()) == ["one", "three", "two"]
        assert_clean_stream(events)


async def test_a_stopping_executor_hands_its_running_step_to_another_at_once(
    services: Services, bus: Bus, step_dir: Path
) -> None:
    marks = step_dir / "marks.txt"
    text = marker_runbook("handover", marks, slow_seconds=60, slow_once=True)
    slow = {"RB_TASK_ACK_WAIT": "60", "RB_WORKER_SHUTDOWN_GRACE": "0"}  # only a hand-back is quick
    first = services.start("executor", **slow)
    execution_id = await publish_trigger(bus, text)
    await wait_for_event(
        bus, execution_id, lambda e: e.type == EventType.STEP_STARTED and e.data["step_id"] == "two"
    )
    services.start("executor", **slow)
    first.terminate()
    events = await wait_terminal(bus, execution_id, timeout=20)
    assert fold(events).status == "SUCCEEDED", services.logs()
    assert marks.read_text().split().count("two") == 2
    assert_clean_stream(events)


async def test_a_step_that_kills_its_worker_every_time_fails_as_lost(
    services: Services, bus: Bus, step_dir: Path, http_server: Any
) -> None:
    marks = step_dir / "marks.txt"
    # A shell step cannot kill its worker (it runs as another user): the step's request makes
    # the server it calls kill the worker that sent it, every time.
    workers: list[subprocess.Popen[bytes]] = []

    def kill_the_worker(request: Any) -> Any:
        for worker in workers:
            if worker.poll() is None:
                os.kill(worker.pid, signal.SIGKILL)
        return http_server.Reply(200, json={})

    http_server.route("/poison", kill_the_worker)
    text = (
        "id: poison\nname: Poison\nsteps:\n"
        f"  - {{id: poison, type: http, inputs: {{url: {http_server.url_for('/poison')!r}}}}}\n"
        f"  - {{id: after, type: shell, depends_on: [poison], inputs: {{command: [touch, {str(marks)!r}]}}}}\n"
    )
    env = {"RB_TASK_ACK_WAIT": "1", "RB_TASK_MAX_DELIVER": "3"}
    services.start("executor", RB_EXECUTOR_WORKERS="false", **env)
    execution_id = await publish_trigger(bus, text)
    deaths = 0
    terminal = asyncio.ensure_future(wait_terminal(bus, execution_id, timeout=60))
    while not terminal.done() and deaths < 10:
        worker = services.start("worker", **env)
        workers.append(worker)
        while worker.poll() is None and not terminal.done():
            await asyncio.wait([terminal], timeout=0.1)
        deaths += worker.poll() is not None
    events = await terminal
    state = fold(events)
    assert state.status == "FAILED", services.logs()
    assert state.steps["poison"].status == "FAILED"
    [failure] = [e for e in events if e.type == EventType.STEP_FAILED]
    assert failure.data["lost"] is True and "3 times" in failure.data["error"]
    assert deaths == 3, "one worker killed per delivery, then no more deliveries"
    assert not marks.exists(), "nothing after the lost step ran"


async def inbox_reports(bus: Bus, execution_id: str) -> int:
    """How many worker outcomes for the execution went through the inbox stream."""
    info = await bus.js.stream_info(
        bus.names.inbox_stream, subjects_filter=bus.names.result_subject(execution_id)
    )
    return sum((info.state.subjects or {}).values())


async def test_workers_in_the_executor_hand_outcomes_to_it_directly(
    services: Services, bus: Bus, step_dir: Path
) -> None:
    services.start("executor")
    marks = step_dir / "marks.txt"
    execution_id = await publish_trigger(bus, marker_runbook("direct-outcomes", marks))
    events = await wait_terminal(bus, execution_id)
    assert fold(events).status == "SUCCEEDED", services.logs()
    assert sorted(marks.read_text().split()) == ["one", "three", "two"]
    assert_clean_stream(events)
    assert await inbox_reports(bus, execution_id) == 0


async def test_standalone_workers_report_through_the_inbox(
    services: Services, bus: Bus, step_dir: Path
) -> None:
    services.start("executor", RB_EXECUTOR_WORKERS="false")
    services.start("worker")
    services.start("worker")
    marks = [step_dir / f"marks-{i}.txt" for i in range(4)]
    ids = [await publish_trigger(bus, marker_runbook(f"standalone-{i}", m)) for i, m in enumerate(marks)]
    results = await asyncio.gather(*(wait_terminal(bus, i, timeout=60) for i in ids))
    for execution_id, events, m in zip(ids, results, marks, strict=True):
        assert fold(events).status == "SUCCEEDED", services.logs()
        assert sorted(m.read_text().split()) == ["one", "three", "two"]
        assert_clean_stream(events)
        assert await inbox_reports(bus, execution_id) == 3  # one outcome per step


async def test_a_duplicate_trigger_starts_one_execution(services: Services, bus: Bus, step_dir: Path) -> None:
    services.start("executor")
    marks = step_dir / "marks.txt"
    text = marker_runbook("dup-trigger", marks)
    execution_id = await publish_trigger(bus, text)
    # Same execution id again, with another message id: the executor must see it exists.
    from rb_common.loader import load_runbook_text
    from rb_common.messages import TriggerRequest
    from rb_engine.runner import RunRequest

    runbook, _ = load_runbook_text(text)
    again = TriggerRequest(
        execution_id=execution_id,
        actor="tests",
        data=RunRequest(runbook=runbook, trigger={"revision": 1}).event_data(),
    )
    await bus.js.publish(
        bus.names.trigger_subject(runbook.id),
        again.encode(),
        headers={"Nats-Msg-Id": execution_id + "-2"},
        stream=bus.names.triggers_stream,
    )
    events = await wait_terminal(bus, execution_id)
    assert fold(events).status == "SUCCEEDED"
    assert sorted(marks.read_text().split()) == ["one", "three", "two"]
    assert [e.type for e in events].count(EventType.EXECUTION_REQUESTED) == 1
