"""Fair and bounded execution (issue 15) with `rb serve executor` processes on real NATS: limits
queue executions (QUEUED, then started in arrival order), `reject` and `cancel_oldest`, an
executor killed while executions wait, and a continuing execution served before a backlog of
new ones."""

from __future__ import annotations

from pathlib import Path

import pytest
from services_support import Services, publish_trigger, wait_for_event, wait_terminal

from rb_common.bus import Bus, last_event, read_execution
from rb_common.events import TERMINAL_EVENTS, Event, EventType
from rb_common.settings import Settings
from rb_engine.coordinator import fold
from rb_engine.replay import Replayer
from rb_engine.runner import PluginExecutor
from rb_engine.steps.registry import default_registry

pytestmark = pytest.mark.integration

WAIT = 60.0  # generous: the machine is shared


def gated_runbook(runbook_id: str, gates: Path, concurrency: str = "") -> str:
    """One shell step that waits until the file `gates/<params.n>` exists."""
    code = (
        "import os, sys, time\n"
        f"p = os.path.join({str(gates)!r}, sys.argv[1])\n"
        "while not os.path.exists(p): time.sleep(0.05)\n"
    )
    return (
        f"id: {runbook_id}\nname: Gated\n{concurrency}"
        "parameters: {type: object, properties: {n: {type: string}}}\n"
        "steps:\n"
        f"  - {{id: hold, type: shell, timeout: 120s, retry: {{max_attempts: 1}},"
        f' inputs: {{command: [python3, -c, {code!r}, "${{params.n}}"]}}}}\n'
    )


def types(events: list[Event]) -> list[str]:
    return [e.type.value for e in events]


async def events_of(bus: Bus, execution_id: str) -> list[Event]:
    return [event for event, _ in await read_execution(bus, execution_id)]


async def has(bus: Bus, execution_id: str, type_: EventType) -> bool:
    return type_ in {e.type for e in await events_of(bus, execution_id)}


async def started(bus: Bus, execution_id: str) -> Event:
    return await wait_for_event(bus, execution_id, lambda e: e.type == EventType.EXECUTION_STARTED, WAIT)


async def queued(bus: Bus, execution_id: str) -> Event:
    return await wait_for_event(bus, execution_id, lambda e: e.type == EventType.EXECUTION_QUEUED, WAIT)


async def arrive(bus: Bus, yaml_text: str, **request: object) -> str:
    """Publish a trigger and wait until the executor has recorded it: the arrival order."""
    execution_id = await publish_trigger(bus, yaml_text, **request)
    await wait_for_event(bus, execution_id, lambda e: e.type == EventType.EXECUTION_REQUESTED, WAIT)
    return execution_id


async def verified(events: list[Event]) -> None:
    report = await Replayer(PluginExecutor(default_registry()), Settings()).replay(events)
    assert report.verified, [str(d) for d in report.deviations]


async def test_limit_2_with_5_triggers_runs_2_queues_3_and_starts_them_in_order(
    services: Services, bus: Bus, step_dir: Path
) -> None:
    services.start("executor")
    yaml_text = gated_runbook("fair-limit", step_dir, "concurrency: {limit: 2}\n")
    ids = [await arrive(bus, yaml_text, params={"n": str(i)}) for i in range(5)]
    for execution_id in ids[:2]:
        await started(bus, execution_id)
    for execution_id in ids[2:]:
        event = await queued(bus, execution_id)
        assert event.data["limit"] == "runbook" and "concurrency.limit of 2" in event.data["reason"]
        assert fold(await events_of(bus, execution_id)).status == "QUEUED"
    # Each slot that frees starts the next in arrival order, and only that one.
    for finished, following in [(0, 2), (1, 3), (2, 4)]:
        (step_dir / str(finished)).touch()
        await wait_terminal(bus, ids[finished], WAIT)
        await started(bus, ids[following])
        for later in ids[following + 1 :]:
            assert not await has(bus, later, EventType.EXECUTION_STARTED), services.logs()
    for n in (3, 4):
        (step_dir / str(n)).touch()
    for execution_id in ids:
        events = await wait_terminal(bus, execution_id, WAIT)
        assert fold(events).status == "SUCCEEDED", services.logs()
        await verified(events)
    third = types(await events_of(bus, ids[2]))
    assert third[:4] == ["execution.requested", "execution.queued", "execution.dequeued", "execution.started"]


async def test_reject_records_a_refusal(services: Services, bus: Bus, step_dir: Path) -> None:
    services.start("executor")
    yaml_text = gated_runbook("fair-reject", step_dir, "concurrency: {limit: 1, on_limit: reject}\n")
    first = await publish_trigger(bus, yaml_text, params={"n": "a"})
    await started(bus, first)
    second = await publish_trigger(bus, yaml_text, params={"n": "b"})
    events = await wait_terminal(bus, second, WAIT)
    assert types(events) == ["execution.requested", "execution.aborted"]
    assert events[1].data["refused"] is True
    assert "concurrency.limit of 1 (on_limit: reject)" in events[1].data["reason"]
    await verified(events)
    (step_dir / "a").touch()
    assert fold(await wait_terminal(bus, first, WAIT)).status == "SUCCEEDED"


async def test_cancel_oldest_cancels_the_running_one_and_starts_the_new_one(
    services: Services, bus: Bus, step_dir: Path
) -> None:
    services.start("executor")
    yaml_text = gated_runbook("fair-cancel", step_dir, "concurrency: {limit: 1, on_limit: cancel_oldest}\n")
    (step_dir / "new").touch()
    oldest = await publish_trigger(bus, yaml_text, params={"n": "old"})
    await wait_for_event(bus, oldest, lambda e: e.type == EventType.STEP_SCHEDULED, WAIT)
    newest = await publish_trigger(bus, yaml_text, params={"n": "new"})
    old_events = await wait_terminal(bus, oldest, WAIT)
    assert fold(old_events).status == "CANCELLED", services.logs()
    cancel = next(e for e in old_events if e.type == EventType.EXECUTION_CANCEL_REQUESTED)
    assert newest in cancel.data["reason"] and cancel.actor == "rb-executor"
    new_events = await wait_terminal(bus, newest, WAIT)
    assert fold(new_events).status == "SUCCEEDED", services.logs()
    assert types(new_events)[:3] == ["execution.requested", "execution.queued", "execution.dequeued"]
    await verified(old_events)
    await verified(new_events)


async def test_queued_executions_survive_an_executor_killed_with_sigkill(
    services: Services, bus: Bus, step_dir: Path
) -> None:
    executor = services.start("executor", RB_MAX_RUNNING_EXECUTIONS="1")
    yaml_text = gated_runbook("fair-kill", step_dir)
    ids = [await arrive(bus, yaml_text, params={"n": str(i)}) for i in range(3)]
    await started(bus, ids[0])
    for execution_id in ids[1:]:
        assert (await queued(bus, execution_id)).data["limit"] == "global"
    services.kill(executor)
    services.start("executor", RB_MAX_RUNNING_EXECUTIONS="1")
    for n in range(3):
        (step_dir / str(n)).touch()
    ends = []
    for execution_id in ids:
        events = await wait_terminal(bus, execution_id, WAIT)
        assert fold(events).status == "SUCCEEDED", services.logs()
        ends.append(next(e.time for e in events if e.type in TERMINAL_EVENTS))
    starts = [(await started(bus, execution_id)).time for execution_id in ids]
    assert starts == sorted(starts), "queued executions start in arrival order"


async def finished(bus: Bus, ids: list[str]) -> int:
    count = 0
    for execution_id in ids:
        last = await last_event(bus, execution_id)
        count += last is not None and last.type in TERMINAL_EVENTS
    return count


async def test_a_continuing_execution_is_not_stuck_behind_a_backlog_of_new_ones(
    services: Services, bus: Bus, step_dir: Path
) -> None:
    """A chain holds at its first step while 150 new executions arrive; once it goes on, its four
    next steps each wait behind at most the other running execution's step (two run at a time),
    never behind the backlog of first steps: before issue 15 every one of them waited behind
    all 150."""
    services.start("executor", RB_MAX_RUNNING_EXECUTIONS="2", RB_WORKER_CONCURRENCY="2")
    code = f"import os, time\nwhile not os.path.exists({str(step_dir / 'go')!r}): time.sleep(0.05)\n"
    chain = (
        "id: fair-chain\nname: Chain\nsteps:\n"
        f"  - {{id: s0, type: shell, timeout: 120s, inputs: {{command: [python3, -c, {code!r}]}}}}\n"
        + "".join(
            f"  - {{id: s{i}, type: transform, depends_on: [s{i - 1}], inputs: {{x: {i}}}}}\n"
            for i in range(1, 5)
        )
    )
    quick = (
        "id: fair-new\nname: New\nsteps:\n  - {id: a, type: wait, inputs: {seconds: 0.2}}\n"
        "  - {id: b, type: transform, depends_on: [a], inputs: {x: 2}}\n"
    )
    first = await publish_trigger(bus, chain)
    await wait_for_event(bus, first, lambda e: e.type == EventType.STEP_STARTED, WAIT)
    backlog = [await publish_trigger(bus, quick) for _ in range(150)]
    before = await finished(bus, backlog)
    (step_dir / "go").touch()
    events = await wait_terminal(bus, first, WAIT)
    after = await finished(bus, backlog)
    assert fold(events).status == "SUCCEEDED", services.logs()
    left = len(backlog) - before
    assert left >= 60, "the backlog must still be there when the chain goes on"
    # FIFO over every execution's tasks finished nearly all of the backlog first; with two
    # running at a time, the chain's steps pass it (a few finish meanwhile on a loaded machine).
    assert after - before < left / 2, f"{after - before} of {left} new executions finished first"
    for execution_id in backlog[-3:]:
        assert fold(await wait_terminal(bus, execution_id, 180)).status == "SUCCEEDED"
