"""RB_NICE: a service lowers its own priority once at start, every thread of it, and never
raises it (rb_cli.services.lower_priority); `rb up` runs the services that do the work below the
API (rb_cli.services.service_env, `rb up --work-nice`)."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys

import pytest
from pydantic import ValidationError

from rb_cli import stack_cmd
from rb_cli.services import PROBED, WORK_NICE, service_env
from rb_common.settings import Settings

# A process that starts a thread, then lowers its priority to argv[1] and prints the niceness
# of each of its threads (field 19 of /proc/self/task/<tid>/stat), the thread's included.
PROBE = """
import json, os, sys, threading
from rb_cli.services import lower_priority
ready, done = threading.Event(), threading.Event()
threading.Thread(target=lambda: (ready.set(), done.wait())).start()
ready.wait(10)
now = lower_priority(int(sys.argv[1]), sys.argv[2] == "idle")
def field(tid, index):  # after the command's name: 16 is the niceness, 38 the policy
    with open(f"/proc/self/task/{tid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[index])
tids = os.listdir("/proc/self/task")
print(json.dumps({"now": now, "threads": [field(t, 16) for t in tids], "policies": [field(t, 38) for t in tids]}))
done.set()
"""
SCHED_OTHER, SCHED_IDLE = 0, 5


def probe(nice: int, *, started_at: int = 0, idle: bool = False) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(nice), "idle" if idle else "-"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        preexec_fn=(lambda: os.nice(started_at)) if started_at else None,
    ).stdout
    return dict(json.loads(out))


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="Linux: a niceness per thread")
def test_every_thread_runs_at_rb_nice_and_a_nicer_start_is_kept() -> None:
    normal = [SCHED_OTHER, SCHED_OTHER]
    assert probe(7) == {"now": 7, "threads": [7, 7], "policies": normal}
    assert probe(0) == {"now": 0, "threads": [0, 0], "policies": normal}  # the default changes nothing
    assert probe(3, started_at=5) == {"now": 5, "threads": [5, 5], "policies": normal}  # never raised


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="Linux: SCHED_IDLE")
def test_rb_sched_idle_puts_every_thread_under_sched_idle() -> None:
    idle = [SCHED_IDLE, SCHED_IDLE]
    assert probe(10, idle=True) == {"now": 10, "threads": [10, 10], "policies": idle}
    assert probe(0, idle=True) == {"now": 0, "threads": [0, 0], "policies": idle}


def test_rb_nice_is_bounded() -> None:
    assert Settings().nice == 0
    assert Settings(nice=19).nice == 19
    for bad in (-1, 20):
        with pytest.raises(ValidationError):
            Settings(nice=bad)


def test_rb_up_runs_the_work_below_the_api() -> None:
    env = {"RB_HOME": "/tmp/x", "RB_NICE": "2"}
    probes = {service: f"127.0.0.1:{9100 + i}" for i, service in enumerate(PROBED)}
    api = service_env("api", env, admin_key="k", probes=probes, work_nice=WORK_NICE)
    assert api["RB_NICE"] == "2" and api["RB_BOOTSTRAP_ADMIN_KEY"] == "k"  # as given
    for service in PROBED:
        work = service_env(service, env, admin_key="k", probes=probes, work_nice=12, work_idle=True)
        assert work["RB_NICE"] == "12" and work["RB_HEALTH_ADDR"] == probes[service]
        assert work["RB_SCHED_IDLE"] == "1" and "RB_SCHED_IDLE" not in api
        assert "RB_BOOTSTRAP_ADMIN_KEY" not in work
        off = service_env(service, env, admin_key="k", probes=probes, work_nice=0)
        assert off["RB_SCHED_IDLE"] == "0" and Settings.model_validate({"sched_idle": off["RB_SCHED_IDLE"]}).sched_idle is False
    parameters = inspect.signature(stack_cmd.up).parameters
    assert parameters["work_nice"].default == WORK_NICE == 10
    assert parameters["work_idle"].default is False  # opt-in: it can starve the work outright
