"""RB_NICE and RB_SCHED_IDLE on a real service (rb_cli.services.lower_priority): `rb serve
executor` started with RB_NICE=7 runs at niceness 7, every thread of it, and so do the processes
of its shell steps (they inherit the worker's niceness); with RB_SCHED_IDLE=1 all of them run
under SCHED_IDLE. A step stays in the worker's session (its own process group only): on Linux a
new session is a new scheduler autogroup, which would run the step as an equal of the whole
stack whatever its niceness or policy. `rb up` gives the work services RB_NICE=10 and
RB_SCHED_IDLE=1 (tests/unit/cli/test_service_nice.py)."""

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
  - id: nice
    type: shell
    retry: {max_attempts: 1}
    inputs:
      command: [python3, -c, "import os; print(os.nice(0), os.sched_getscheduler(0), os.getsid(0), os.getpgrp())"]
"""


SCHED_OTHER, SCHED_IDLE = 0, 5


def thread_field(pid: int, index: int) -> list[int]:
    """A field of /proc/<pid>/task/<tid>/stat for every thread of the process, counted after the
    command's name (16: the niceness, 38: the scheduling policy)."""
    values = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        values.append(int(stat.rsplit(")", 1)[1].split()[index]))
    return values


async def step_sees(services: Services, bus: Bus, **env: str) -> tuple[int, list[str]]:
    executor = services.start("executor", **env)
    execution_id = await publish_trigger(bus, RUNBOOK)
    events = await wait_terminal(bus, execution_id, 60)
    assert fold(events).status == "SUCCEEDED", services.logs()
    [step] = [e for e in events if e.type == EventType.STEP_SUCCEEDED]
    return executor.pid, step.data["result"]["stdout"].split()


async def test_the_executor_its_threads_and_its_steps_run_at_rb_nice(services: Services, bus: Bus) -> None:
    pid, (nice, policy, session, group) = await step_sees(services, bus, RB_NICE="7")
    assert (nice, policy) == ("7", str(SCHED_OTHER))
    assert int(session) == os.getsid(pid) and int(group) != os.getpgid(pid)  # its own group, our session
    threads = thread_field(pid, 16)
    assert len(threads) > 1 and set(threads) == {7}, threads


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="Linux: SCHED_IDLE")
async def test_with_rb_sched_idle_they_run_under_sched_idle(services: Services, bus: Bus) -> None:
    pid, (nice, policy, session, group) = await step_sees(services, bus, RB_NICE="7", RB_SCHED_IDLE="1")
    assert (nice, policy) == ("7", str(SCHED_IDLE))
    assert int(session) == os.getsid(pid) and int(group) != os.getpgid(pid)  # its own group, our session
    assert set(thread_field(pid, 38)) == {SCHED_IDLE}
