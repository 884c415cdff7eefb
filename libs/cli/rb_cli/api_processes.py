"""`rb up`'s API as several processes on one port (RB_API_PROCESSES, SO_REUSEPORT on Linux):
how many, their environment, their shared metrics directory, and whether one listens yet.

Why several: one API process answers a burst of requests one event-loop turn after another on
one core (bench/loadtest.md, "Session 10": 50 executes arriving at once reached the route
spread over 160 ms); with two, the kernel spreads the connections over both.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from pathlib import Path
from typing import TextIO

from rb_common.listen import can_share_ports
from rb_common.metrics import MULTIPROC_ENV
from rb_common.settings import Settings

# `rb up`'s default when neither --api-processes nor RB_API_PROCESSES says otherwise.
UP_DEFAULT = 2


def api_process_count(settings: Settings, requested: int | None) -> int:
    """--api-processes, else RB_API_PROCESSES when set, else UP_DEFAULT; 1 where the kernel does
    not spread one port's connections over several processes (not Linux)."""
    if requested is not None:
        count = requested
    elif "api_processes" in settings.model_fields_set:
        count = settings.api_processes
    else:
        count = UP_DEFAULT
    return count if can_share_ports() else 1


def process_names(count: int) -> list[str]:
    """The names `rb up` gives them (and their logs): api, api-2, api-3 ..."""
    return ["api"] + [f"api-{i}" for i in range(2, count + 1)]


def metrics_dir(home: Path, port: int) -> Path:
    """Where the API processes on `port` write their metrics (by port: the port is this stack's
    alone, claim_port). Each process that ever ran leaves its files until the next `rb up`."""
    return home / "metrics" / f"api-{port}"


def fresh_metrics_dir(home: Path, port: int) -> Path:
    """The metrics directory, emptied (a new stack counts from zero, as one process would)."""
    directory = metrics_dir(home, port)
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def api_env(env: dict[str, str], count: int, home: Path, port: int) -> dict[str, str]:
    """What every API process of the stack gets besides `env`: the count (above 1: bind with
    SO_REUSEPORT) and, with several, the shared metrics directory."""
    extra = {"RB_API_PROCESSES": str(count)}
    if count > 1:
        extra[MULTIPROC_ENV] = str(metrics_dir(home, port).resolve())
    else:
        env = {k: v for k, v in env.items() if k != MULTIPROC_ENV}
    return {**env, **extra}


class PortTaken(Exception):
    """Another `rb up` of this user holds the API port."""


def claim_port(port: int) -> TextIO:
    """An exclusive lock on the API port among this user's `rb up`s, held as long as the returned
    file stays open. SO_REUSEPORT lets any process of the same user bind the port beside ours, so
    a second stack started meanwhile would otherwise not fail to bind but share the connections;
    the lock makes it fail (other users cannot share the port at all)."""
    directory = Path(tempfile.gettempdir()) / f"rb-{os.getuid()}"
    directory.mkdir(mode=0o700, exist_ok=True)
    handle = (directory / f"api-port-{port}.lock").open("a", encoding="utf-8")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise PortTaken(port) from None
    return handle


def _listening_inodes(port: int) -> set[str]:
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text(encoding="ascii").splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                inodes.add(inode)
    return inodes


def listens(pid: int, port: int) -> bool:
    """Whether process `pid` has a socket listening on `port` (Linux's /proc): an API process
    listens once its app has started, and only then does the kernel hand it connections."""
    inodes = _listening_inodes(port)
    if not inodes:
        return False
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:[") and target[len("socket:[") : -1] in inodes:
            return True
    return False
