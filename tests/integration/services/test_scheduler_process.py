"""Cron schedules run by two scheduler processes: one execution per fire time, no more."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid
from datetime import datetime, timedelta

import pytest
from services_support import Services, api, approve
from test_stack_e2e import Stack

from rb_common.statuses import TERMINAL_EXECUTION

pytestmark = pytest.mark.integration


@pytest.fixture
def stack(services: Services, postgres_database: str) -> Stack:
    return Stack(services, postgres_database)


def every_second(runbook_id: str) -> str:
    return f"""
id: {runbook_id}
name: Every second
triggers:
  - cron: "* * * * * *"
    params: {{fired: "${{trigger.fire_time}}"}}
parameters:
  type: object
  properties: {{fired: {{type: string}}}}
steps:
  - {{id: note, type: transform, inputs: {{fired: "${{params.fired}}"}}}}
"""


async def test_two_schedulers_start_one_execution_per_fire_time(stack: Stack) -> None:
    stack.start("recorder", "executor", "api")
    stack.services.start("scheduler", RB_SCHEDULER_RELOAD_SECONDS="0.5")
    stack.services.start("scheduler", RB_SCHEDULER_RELOAD_SECONDS="0.5")
    stack.wait_ready()
    runbook_id = f"cron-{uuid.uuid4().hex[:8]}"
    response = api.post(
        f"{stack.base}/runbooks",
        content=every_second(runbook_id),
        headers={"Content-Type": "application/yaml"},
    )
    assert response.status_code == 201, response.text
    approved_at = time.time()
    assert approve(stack.base, runbook_id).status_code == 200
    await asyncio.sleep(5)
    assert api.post(f"{stack.base}/runbooks/{runbook_id}/deprecate").status_code == 200
    deprecated_at = time.time()
    # The last fires finish and reach the recorder: at least 3 s (a fire triggered as the
    # deprecation landed becomes a row), then until every row has ended (a slow machine takes
    # longer than that).
    await asyncio.sleep(3)
    deadline = time.monotonic() + 60
    while True:
        rows = stack.rows(
            "SELECT id, status, trigger FROM runbook_executions WHERE runbook_id = :r", r=runbook_id
        )
        if rows and all(r.status in TERMINAL_EXECUTION for r in rows):
            break
        assert time.monotonic() < deadline, ([r.status for r in rows], stack.services.logs())
        await asyncio.sleep(0.2)
    triggers = [json.loads(r.trigger) if isinstance(r.trigger, str) else r.trigger for r in rows]
    fire_times = sorted(datetime.fromisoformat(t["fire_time"]) for t in triggers)
    assert len(fire_times) == len(set(fire_times)), f"a fire time started twice: {fire_times}"
    assert all(r.status == "SUCCEEDED" for r in rows), stack.services.logs()
    window = deprecated_at - approved_at
    # Each second in the window fires once; the reload interval delays the first and last by
    # up to 0.5 s, hence one either way at the edges.
    assert window - 2 <= len(fire_times) <= window + 1, (len(fire_times), window)
    seconds = [t.timestamp() for t in fire_times]
    assert all(b - a == 1 for a, b in itertools.pairwise(seconds)), fire_times


async def test_missed_fires_run_once_each_when_a_scheduler_comes_back(stack: Stack) -> None:
    """Both schedulers are killed and stay down across three fire times of a per-second cron;
    one comes back: each missed fire runs once (RB_SCHEDULER_COALESCE=false) within 5 s, and the
    second that kept running fires on, one execution per fire time."""
    stack.start("recorder", "executor", "api")
    env = {"RB_SCHEDULER_RELOAD_SECONDS": "0.5", "RB_SCHEDULER_COALESCE": "false"}
    schedulers = [stack.services.start("scheduler", **env) for _ in range(2)]
    stack.wait_ready()
    runbook_id = f"cron-{uuid.uuid4().hex[:8]}"
    response = api.post(
        f"{stack.base}/runbooks",
        content=every_second(runbook_id),
        headers={"Content-Type": "application/yaml"},
    )
    assert response.status_code == 201, response.text
    assert approve(stack.base, runbook_id).status_code == 200

    def fire_times() -> list[datetime]:
        rows = stack.rows("SELECT trigger FROM runbook_executions WHERE runbook_id = :r", r=runbook_id)
        triggers = [json.loads(r.trigger) if isinstance(r.trigger, str) else r.trigger for r in rows]
        return sorted(datetime.fromisoformat(t["fire_time"]) for t in triggers)

    def last_fire() -> datetime | None:
        rows = stack.rows(
            "SELECT last_fire_time FROM schedule_fires WHERE runbook_id = :r AND trigger_index = 0",
            r=runbook_id,
        )
        return rows[0].last_fire_time if rows else None

    deadline = time.monotonic() + 30
    while len(fire_times()) < 2 or last_fire() is None:
        assert time.monotonic() < deadline, stack.services.logs()
        await asyncio.sleep(0.2)
    for process in schedulers:
        stack.services.kill(process)
    last = last_fire()
    assert last is not None
    # Down across three fire times (the wall clock has to pass them).
    while time.time() < last.timestamp() + 3.5:
        await asyncio.sleep(0.1)
    missed = [last + timedelta(seconds=n) for n in (1, 2, 3)]
    assert max(fire_times()) <= last  # nothing fired meanwhile

    back = time.time()
    stack.services.start("scheduler", **env)
    deadline = time.monotonic() + 30
    while not all(t in fire_times() for t in missed):
        assert time.monotonic() < deadline, stack.services.logs()
        await asyncio.sleep(0.2)
    rows = stack.rows(
        "SELECT trigger, requested_at FROM runbook_executions WHERE runbook_id = :r", r=runbook_id
    )
    requested = {}
    for row in rows:
        trigger = json.loads(row.trigger) if isinstance(row.trigger, str) else row.trigger
        requested[datetime.fromisoformat(trigger["fire_time"])] = row.requested_at.timestamp()
    for t in missed:
        # Within 5 s of the scheduler starting (its process start, imports and migrations included).
        assert requested[t] - back <= 5.0, (t, requested[t] - back, stack.services.logs())
    times = fire_times()
    assert len(times) == len(set(times)), f"a fire time started twice: {times}"
    seconds = [t.timestamp() for t in times]
    assert all(b - a == 1 for a, b in itertools.pairwise(seconds)), times  # no gap, none twice
    # GET /schedules: the last fire time; nothing was missed beyond the grace (30 s).
    [schedule] = [
        s for s in api.get(f"{stack.base}/schedules").json()["items"] if s["runbook_id"] == runbook_id
    ]
    assert schedule["missed_fires"] == 0 and schedule["last_fire_time"] is not None
    assert api.post(f"{stack.base}/runbooks/{runbook_id}/deprecate").status_code == 200
