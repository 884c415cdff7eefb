"""shell under its supervisor: the idempotency key in the environment, exit statuses passed
through, and a step's processes (grandchildren included) dying with the process that runs it."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from rb_engine.steps.base import StepContext
from rb_engine.steps.process_groups import GROUPS
from rb_engine.steps.shell import ShellStep

pytestmark = pytest.mark.integration

MakeCtx = Callable[..., StepContext]


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


async def until(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.01)
    return predicate()


async def test_the_command_sees_its_idempotency_key_and_nothing_the_supervisor_adds(
    make_ctx: MakeCtx, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LC_CTYPE", raising=False)  # the worker's own would be passed on
    ctx = make_ctx(idempotency_key="exec-1:step:2")
    result = await ShellStep().run({"command": ["env"]}, ctx)
    env = dict(line.split("=", 1) for line in result["stdout"].splitlines())
    assert env["RB_IDEMPOTENCY_KEY"] == "exec-1:step:2"
    assert "LC_CTYPE" not in env  # Python's locale coercion in the supervisor stays there
    kept = await ShellStep().run({"command": ["env"], "env": {"LC_CTYPE": "C"}}, make_ctx())
    assert "LC_CTYPE=C" in kept["stdout"].splitlines()


async def test_exit_codes_and_signals_come_through_the_supervisor(make_ctx: MakeCtx) -> None:
    code = await ShellStep().run({"command": ["sh", "-c", "exit 3"], "allow_failure": True}, make_ctx())
    assert code["exit_code"] == 3
    killed = await ShellStep().run({"command": ["sh", "-c", "kill -9 $$"], "allow_failure": True}, make_ctx())
    assert killed["exit_code"] == -9
    piped = await ShellStep().run({"command": ["sh", "-c", "yes | head -1"]}, make_ctx())
    assert piped["stdout"] == "y\n"  # SIGPIPE is the default again in the command


async def test_a_running_group_is_listed_while_the_step_runs(make_ctx: MakeCtx, step_dir: Path) -> None:
    started = step_dir / "started"
    step = asyncio.ensure_future(
        ShellStep().run({"command": ["sh", "-c", f"touch {started}; sleep 30"], "timeout": 60}, make_ctx())
    )
    assert await until(started.exists, 10)
    [pgid] = GROUPS.running
    assert os.getpgid(pgid) == pgid
    step.cancel()
    await asyncio.gather(step, return_exceptions=True)
    assert GROUPS.running == {}
    assert await until(lambda: not alive(pgid), 5)


RUN_ONE_STEP = """
import asyncio, sys
from pathlib import Path
from rb_common.settings import Settings
from rb_engine.clock import SystemClock
from rb_engine.steps.base import StepContext
from rb_engine.steps.shell import ShellStep

ctx = StepContext("e", "s", 1, "e:s:1", Settings(home=Path(sys.argv[2])), SystemClock(), base_dir=Path(sys.argv[2]))
asyncio.run(ShellStep().run({"command": ["sh", "-c", sys.argv[1]]}, ctx))
"""


@pytest.mark.parametrize("how", ["worker killed", "worker killed at once"])
async def test_the_steps_processes_die_with_the_process_that_runs_it(
    tmp_path: Path, step_dir: Path, how: str
) -> None:
    """Grandchildren too: `sleep` below is not the supervisor's child but the shell's."""
    pids = step_dir / "pids"
    script = f"sleep 60 & echo $! >> {pids}; sh -c 'sleep 60' & echo $! >> {pids}; wait"
    runner = subprocess.Popen([sys.executable, "-c", RUN_ONE_STEP, script, str(tmp_path)])
    try:
        assert await until(lambda: pids.exists() and len(pids.read_text().split()) == 2, 20)
        if how == "worker killed":
            await asyncio.sleep(0.2)
        runner.send_signal(signal.SIGKILL)
        runner.wait(timeout=5)
        sleeps = [int(p) for p in pids.read_text().split()]
        assert await until(lambda: not any(alive(p) for p in sleeps), 3), "the step outlived its worker"
    finally:
        runner.kill()
