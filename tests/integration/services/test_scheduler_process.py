"""Cron schedules run by two scheduler processes: one execution per fire time, no more."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid
from datetime import datetime

import pytest
from services_support import Services, api, approve
from test_stack_e2e import Stack

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
    await asyncio.sleep(3)  # the last fires finish and reach the recorder

    rows = stack.rows(
        "SELECT id, status, trigger FROM runbook_executions WHERE runbook_id = :r", r=runbook_id
    )
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
