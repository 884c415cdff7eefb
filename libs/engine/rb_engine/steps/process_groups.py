"""The process groups of running shell steps, and how a shell step starts under its supervisor.

Each shell step runs as its own process group, led by `supervise.py`, which kills the group when
the worker dies. The groups running in this process are listed in `GROUPS` (with the leader's
start time, so that a pid used again later is never mistaken for one of them); a worker keeps
that list on disk, so that the next worker to start can kill what a dead one left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

SUPERVISOR = Path(__file__).with_name("supervise.py")


class ProcessGroups:
    """pgid -> the leader's start time (None where /proc cannot tell), with change listeners."""

    def __init__(self) -> None:
        self.running: dict[int, int | None] = {}
        self.listeners: list[Callable[[], None]] = []

    def add(self, pgid: int) -> None:
        self.running[pgid] = start_time(pgid)
        self._changed()

    def discard(self, pgid: int) -> None:
        if pgid in self.running:
            del self.running[pgid]
            self._changed()

    def _changed(self) -> None:
        for listener in list(self.listeners):
            listener()


GROUPS = ProcessGroups()


def start_time(pid: int) -> int | None:
    """When the process started, in clock ticks since boot (field 22 of /proc/PID/stat): with
    the pid, it names one process for good. None if there is no such process (or no /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    return parse_start_time(stat)


def parse_start_time(stat: bytes) -> int | None:
    # The command name (field 2) is in parentheses and may hold spaces and parentheses itself.
    rest = stat[stat.rfind(b")") + 2 :].split()
    try:
        return int(rest[19])  # fields from 3 on: 22 is index 19
    except (IndexError, ValueError):
        return None


def supervised_argv(
    command: list[str], env: dict[str, str], status_fd: int, sandbox: dict[str, Any] | None = None
) -> list[str]:
    """The argv that runs `command` under the supervisor, as a child of this process, in the
    sandbox described by `sandbox` (rb_engine.steps.sandbox.Sandbox.spec; none: as it is)."""
    lc_ctype = "=" + env["LC_CTYPE"] if "LC_CTYPE" in env else "-"
    return [
        sys.executable,
        "-I",
        "-S",
        str(SUPERVISOR),
        str(os.getpid()),
        str(status_fd),
        lc_ctype,
        json.dumps(sandbox or {}),
        *command,
    ]


async def spawn_status(fd: int) -> tuple[int | None, str]:
    """What the supervisor reports on its status pipe (closes `fd`): (0, "exec") once the
    command runs; (errno, stage) when the sandbox (stage "limits", "user", "cwd") or the exec
    ("exec") failed; (None, "exec") if it ended without a word."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    pipe = os.fdopen(fd, "rb", buffering=0)
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
    try:
        line = await reader.readline()
    finally:
        transport.close()
    code, _, stage = line.decode("ascii", "replace").strip().partition(" ")
    with contextlib.suppress(ValueError):
        return int(code), stage or "exec"
    return None, "exec"


_STAGES = {
    "limits": "cannot set the step's resource limits",
    "user": "cannot switch to the step user",
    "cwd": "cannot enter the working directory as the step user",
}


def spawn_error(code: int | None, program: str, stage: str = "exec") -> str:
    """The step's error for a command the supervisor could not start."""
    if stage in _STAGES:
        return f"{_STAGES[stage]}: {os.strerror(code) if code else 'unknown error'}"
    if code == errno.ENOENT:
        return f"command not found: {program}"
    if code in (errno.EACCES, errno.EPERM):
        return f"command not executable: {program}"
    if code is None:
        return f"cannot start {program}: its supervisor ended before starting it"
    return f"cannot start {program}: {os.strerror(code)}"
