"""RB_NICE on a real service (rb_cli.services.lower_priority): `rb serve executor` started with
RB_NICE=7 runs at niceness 7, every thread of it, and so do the processes of its shell steps
(they inherit the worker's niceness). `rb up` gives the work services RB_NICE=10
(tests/unit/cli/test_service_nice.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from services_support import Services, publish_trigger, wait_terminal

from rb_common.bus import Bus
from rb_common.events import EventType
from rb_engine.coordinator import fold

pytestmark = pytest.mark.integration

RUNBOOK = """\
id: nice-probe
name: Niceness
steps:
  - {id: nice, type: shell, retry: {max_attempts: 1}, inputs: {command: [python3, -c, "import os; print(os.nice(0))"]}}
"""


def thread_niceness(pid: int) -> list[int]:
    """Field 19 of /proc/<pid>/task/<tid>/stat for every thread of the process."""
    values = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        values.append(int(stat.rsplit(")", 1)[1].split()[16]))
    return values


async def test_the_executor_its_threads_and_its_steps_run_at_rb_nice(services: Services, bus: Bus) -> None:
    executor = services.start("executor", RB_NICE="7")
    execution_id = await publish_trigger(bus, RUNBOOK)
    events = await wait_terminal(bus, execution_id, 60)
    assert fold(events).status == "SUCCEEDED", services.logs()
    [step] = [e for e in events if e.type == EventType.STEP_SUCCEEDED]
    assert step.data["result"]["stdout"].strip() == "7", step.data
    threads = thread_niceness(executor.pid)
    assert len(threads) > 1 and set(threads) == {7}, threads
