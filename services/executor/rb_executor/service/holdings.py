"""What a worker holds, kept on disk for the worker that comes after it.

Each worker writes `RB_HOME/workers/<pid>.json`: its pid and start time (a pid alone may name
another process later), the process groups of its running shell steps, and the JetStream reply
subjects of the tasks it holds. The file is touched after every round of in-progress acks, so
its mtime says when JetStream last heard of those tasks.

A worker that starts, and every running worker now and then, reaps the files of dead workers on
the same host: it kills their process groups (the supervisor of each shell step normally did
that already, when its worker died) and waits until they are gone, then hands their tasks back
(`-NAK` on the recorded reply subjects; any connection may publish an ack) so they are
redelivered at once instead of after AckWait. A NAK is sent only while JetStream cannot have
redelivered the task yet: a NAK on a delivery that has since gone to another worker would hand
the task out a third time, beside the second.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rb_engine.steps.process_groups import GROUPS, ProcessGroups, start_time

log = logging.getLogger(__name__)

NAK_MARGIN = 0.5  # seconds kept clear of the earliest moment JetStream may redeliver
GONE_TIMEOUT = 5.0  # how long a reaper waits for killed groups to disappear
CLAIMED = ".reaping-"


@dataclass
class Holdings:
    """This worker's file."""

    directory: Path
    ack_wait: float
    heartbeat: float
    groups: ProcessGroups = GROUPS
    pid: int = field(default_factory=os.getpid)
    tasks: dict[str, None] = field(default_factory=dict)  # reply subjects, in arrival order
    dirty: bool = False
    _disk: ThreadPoolExecutor | None = field(default=None, init=False, repr=False)
    _pending: Future[None] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.started = start_time(self.pid)
        self.path = self.directory / f"{self.pid}.json"

    @property
    def enabled(self) -> bool:
        return self.started is not None  # Linux with /proc: process identities can be checked

    def open(self) -> None:
        if not self.enabled:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        # The disk is written by a thread of its own, in order: a slow disk (a rename can take
        # 100 ms on a busy host) never holds up the event loop on a heartbeat.
        self._disk = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rb-holdings")
        self.groups.listeners.append(self.write)  # a new group is on disk before its step runs far
        self.write()

    def close(self) -> None:
        with contextlib.suppress(ValueError):
            self.groups.listeners.remove(self.write)
        if self._disk is not None:
            self._disk.shutdown(wait=True)
            self._disk = None
        with contextlib.suppress(OSError):
            self.path.unlink()

    def hold(self, reply: str | None) -> None:
        if reply:
            self.tasks[reply] = None
            self.dirty = True

    def release(self, reply: str | None) -> None:
        if reply and reply in self.tasks:
            del self.tasks[reply]
            self.dirty = True

    def beat(self) -> None:
        """After a round of in-progress acks: the file (its mtime) says JetStream heard of
        every held task no longer than `heartbeat` ago. Written without waiting for the disk;
        the mtime is set to the time of this beat, however late the write lands."""
        if not self.enabled:
            return
        now = time.time()
        if self.dirty:
            self._queue(self._encoded(), now)
        elif self.tasks or self.groups.running:
            self._queue(None, now)

    def write(self) -> None:
        """The file as things are now, on disk when this returns."""
        if not self.enabled:
            return
        self._queue(self._encoded(), None)
        self.flush()

    def flush(self) -> None:
        """Until every write asked for so far is on disk."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def record(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "started": self.started,
            "ack_wait": self.ack_wait,
            "heartbeat": self.heartbeat,
            "groups": [[pgid, leader] for pgid, leader in self.groups.running.items()],
            "tasks": list(self.tasks),
        }

    def _encoded(self) -> bytes:
        self.dirty = False
        return json.dumps(self.record()).encode()  # as things are now, on the caller's thread

    def _queue(self, data: bytes | None, mtime: float | None) -> None:
        if self._disk is None:
            self._store(data, mtime)
            return
        self._pending = self._disk.submit(self._store, data, mtime)  # one thread: in order

    def _store(self, data: bytes | None, mtime: float | None) -> None:
        if data is not None:
            temporary = self.path.with_suffix(".tmp")
            try:
                temporary.write_bytes(data)
                os.replace(temporary, self.path)
            except OSError:
                log.warning("cannot write %s", self.path, exc_info=True)
                return
        if mtime is not None:
            with contextlib.suppress(OSError):
                os.utime(self.path, (mtime, mtime))


# -- reaping --------------------------------------------------------------------------------------


def is_alive(pid: int, started: int | None) -> bool:
    return started is not None and start_time(pid) == started


def claimable(path: Path, me: int) -> bool:
    """A dead worker's file, or one claimed by a reaper that died before it was done."""
    name = path.name
    if CLAIMED in name:
        claimer = name.rsplit(CLAIMED, 1)[1]
        if not claimer.isdigit() or int(claimer) == me:
            return False
        return start_time(int(claimer)) is None  # (a pid reused since only delays the reaping)
    if not name.endswith(".json"):
        return False
    try:
        record = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return False  # being written: its owner is alive
    return not is_alive(int(record.get("pid", 0)), record.get("started"))


def nak_deadline(record: dict[str, Any], heard_at: float, ack_wait_now: float) -> float:
    """Until when a NAK of the recorded tasks cannot meet a redelivery: JetStream heard of each
    of them at `heard_at - heartbeat` at the earliest and waits AckWait (the first backoff step)
    before it redelivers; the consumer's AckWait may have been lowered since."""
    ack_wait = min(float(record.get("ack_wait", 0)), ack_wait_now)
    return heard_at + ack_wait - float(record.get("heartbeat", ack_wait)) - NAK_MARGIN


def kill_groups(groups: list[list[int | None]]) -> list[int]:
    """SIGKILL the recorded groups that are still the same groups; returns those signalled."""
    killed = []
    for pgid, leader in groups:
        if not isinstance(pgid, int) or pgid <= 1:
            continue
        now = start_time(pgid)
        if now is not None and now != leader:
            # The pid leads another process now, so the recorded group is gone (a pid is not
            # given out while a group of that id has members).
            continue
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            continue
        killed.append(pgid)
    return killed


def group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


Publish = Callable[[str, bytes], Awaitable[None]]


async def reap(directory: Path, publish: Publish, ack_wait_now: float, me: int | None = None) -> int:
    """Reap every dead worker's file in `directory`; returns how many tasks were handed back."""
    me = os.getpid() if me is None else me
    handed_back = 0
    try:
        candidates = sorted(directory.iterdir())
    except OSError:
        return 0
    for path in candidates:
        if not claimable(path, me):
            continue
        base = path.name.split(CLAIMED, 1)[0]
        claimed = path.with_name(f"{base}{CLAIMED}{me}")
        try:
            heard_at = path.stat().st_mtime
            os.rename(path, claimed)  # exactly one reaper gets it
        except OSError:
            continue
        handed_back += await _reap_one(claimed, heard_at, publish, ack_wait_now)
    return handed_back


async def _reap_one(path: Path, heard_at: float, publish: Publish, ack_wait_now: float) -> int:
    try:
        record = json.loads(path.read_bytes())
    except (OSError, ValueError):
        record = {}
    killed = kill_groups(record.get("groups") or [])
    deadline = time.monotonic() + GONE_TIMEOUT
    while any(group_exists(pgid) for pgid in killed) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    tasks = [reply for reply in record.get("tasks") or [] if isinstance(reply, str)]
    handed_back = 0
    if tasks and time.time() < nak_deadline(record, heard_at, ack_wait_now):
        for reply in tasks:
            with contextlib.suppress(Exception):
                await publish(reply, b"-NAK")
                handed_back += 1
    log.warning(
        "reaped dead worker %s: killed %d process group(s), handed back %d of %d task(s)%s",
        record.get("pid"),
        len(killed),
        handed_back,
        len(tasks),
        "" if handed_back == len(tasks) else " (the rest come back after AckWait)",
    )
    with contextlib.suppress(OSError):
        path.unlink()
    return handed_back
