"""`rb up`'s API as several processes on one port (RB_API_PROCESSES, SO_REUSEPORT on Linux):
how many, their environment, their shared metrics directory, and whether one listens yet.

Why several: one API process answers a burst of requests one event-loop turn after another on
one core (bench/loadtest.md, "Session 10": 50 executes arriving at once reached the route
spread over 160 ms); with two, the kernel spreads the connections over both.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
from pathlib import Path

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
    if not sys.platform.startswith("linux") or not hasattr(socket, "SO_REUSEPORT"):
        return 1
    return count


def process_names(count: int) -> list[str]:
    """The names `rb up` gives them (and their logs): api, api-2, api-3 ..."""
    return ["api"] + [f"api-{i}" for i in range(2, count + 1)]


def metrics_dir(home: Path) -> Path:
    return home / "metrics" / "api"


def fresh_metrics_dir(home: Path) -> Path:
    """The directory the API processes write their metrics to, emptied (a new stack counts from
    zero, as a restarted single process would)."""
    directory = metrics_dir(home)
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    return directory


def api_env(env: dict[str, str], count: int, home: Path) -> dict[str, str]:
    """What every API process of the stack gets besides `env`: the count (above 1: bind with
    SO_REUSEPORT) and, with several, the shared metrics directory."""
    extra = {"RB_API_PROCESSES": str(count)}
    if count > 1:
        extra[MULTIPROC_ENV] = str(metrics_dir(home).resolve())
    else:
        env = {k: v for k, v in env.items() if k != MULTIPROC_ENV}
    return {**env, **extra}


def port_in_use(host: str, port: int) -> bool:
    """Whether something listens on (or holds) host:port: checked before the API processes bind
    with SO_REUSEPORT, which would otherwise join a stack already there instead of failing.
    SO_REUSEADDR: a port left in TIME_WAIT by closed connections counts as free."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError:
            return True
    return False


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
