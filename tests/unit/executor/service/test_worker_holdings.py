"""A worker's holdings file and the reaping of dead workers' files (real processes, no NATS)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rb_engine.steps.process_groups import ProcessGroups, start_time
from rb_executor.service.holdings import NAK_MARGIN, Holdings, claimable, kill_groups, nak_deadline, reap

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc")


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def write_record(directory: Path, **record: object) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{record['pid']}.json"
    path.write_text(json.dumps(record))
    return path


def test_the_file_lists_groups_at_once_and_tasks_on_the_next_beat(tmp_path: Path) -> None:
    groups = ProcessGroups()
    holdings = Holdings(tmp_path / "workers", ack_wait=5.0, heartbeat=1.0, groups=groups)
    holdings.open()
    record = json.loads(holdings.path.read_text())
    assert (record["pid"], record["started"], record["groups"], record["tasks"]) == (
        os.getpid(),
        start_time(os.getpid()),
        [],
        [],
    )
    groups.add(os.getpid())
    assert json.loads(holdings.path.read_text())["groups"] == [[os.getpid(), start_time(os.getpid())]]
    holdings.hold("$JS.ACK.T.w.1.5.5.0.0")
    assert json.loads(holdings.path.read_text())["tasks"] == []
    beat = time.time()
    holdings.beat()  # written by the holdings' own thread: the event loop does not wait
    holdings.flush()
    assert json.loads(holdings.path.read_text())["tasks"] == ["$JS.ACK.T.w.1.5.5.0.0"]
    assert abs(holdings.path.stat().st_mtime - beat) < 1, "the mtime is the beat's"
    os.utime(holdings.path, (0, 0))
    holdings.beat()  # nothing new: only the mtime says JetStream heard of the tasks just now
    holdings.flush()
    assert time.time() - holdings.path.stat().st_mtime < 5
    holdings.release("$JS.ACK.T.w.1.5.5.0.0")
    holdings.beat()
    holdings.flush()
    assert json.loads(holdings.path.read_text())["tasks"] == []
    holdings.close()
    assert not holdings.path.exists()
    assert groups.listeners == []


def test_only_dead_workers_files_are_claimable(tmp_path: Path) -> None:
    me = os.getpid()
    alive = write_record(tmp_path, pid=me, started=start_time(me))
    reused = write_record(tmp_path, pid=os.getppid(), started=12)  # the pid lives on, another process
    dead = write_record(tmp_path, pid=dead_pid(), started=12)
    claimed_by_dead = tmp_path / f"99.json.reaping-{dead_pid()}"
    claimed_by_dead.write_text("{}")
    claimed_by_me = tmp_path / f"98.json.reaping-{me}"
    claimed_by_me.write_text("{}")
    assert [p.name for p in sorted(tmp_path.iterdir()) if claimable(p, me)] == sorted(
        [reused.name, dead.name, claimed_by_dead.name]
    )
    assert not claimable(alive, me) and not claimable(claimed_by_me, me)


def test_a_nak_is_only_sent_while_no_redelivery_can_have_happened() -> None:
    record = {"ack_wait": 5.0, "heartbeat": 1.0}
    assert nak_deadline(record, 100.0, 5.0) == 100.0 + 5.0 - 1.0 - NAK_MARGIN
    assert nak_deadline(record, 100.0, 2.0) == 100.0 + 2.0 - 1.0 - NAK_MARGIN  # AckWait lowered since


def test_kill_groups_spares_a_pid_that_leads_another_process_now() -> None:
    me = os.getpid()
    assert kill_groups([[me, (start_time(me) or 0) + 1]]) == []  # would have killed the test run
    assert kill_groups([[dead_pid(), None], [1, None], [None, None]]) == []


def orphan_group() -> int:
    """A process group of two sleeps whose leader is not our child (a dead worker's was not)."""
    out = subprocess.run(
        ["sh", "-c", "setsid sh -c 'sleep 30 & sleep 30' >/dev/null 2>&1 & echo $!"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(out.stdout)


def group_alive(pgid: int) -> bool:
    return subprocess.run(["pgrep", "-g", str(pgid)], capture_output=True).returncode == 0


async def test_reaping_kills_the_dead_workers_groups_then_hands_its_tasks_back(tmp_path: Path) -> None:
    group = orphan_group()
    try:
        deadline = time.monotonic() + 5
        while start_time(group) is None or not group_alive(group):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        write_record(
            tmp_path,
            pid=dead_pid(),
            started=1,
            ack_wait=5.0,
            heartbeat=1.0,
            groups=[[group, start_time(group)]],
            tasks=["$JS.ACK.T.w.1.5.5.0.0", "$JS.ACK.T.w.1.6.6.0.0"],
        )
        sent: list[tuple[str, bytes, bool]] = []

        async def publish(subject: str, data: bytes) -> None:
            sent.append((subject, data, not group_alive(group)))

        assert await reap(tmp_path, publish, ack_wait_now=5.0) == 2
        assert sent == [
            ("$JS.ACK.T.w.1.5.5.0.0", b"-NAK", True),
            ("$JS.ACK.T.w.1.6.6.0.0", b"-NAK", True),
        ], "handed back only once the group is gone"
        assert list(tmp_path.iterdir()) == []
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)


async def test_reaping_late_hands_nothing_back(tmp_path: Path) -> None:
    path = write_record(
        tmp_path, pid=dead_pid(), started=1, ack_wait=5.0, heartbeat=1.0, groups=[], tasks=["r"]
    )
    os.utime(path, (time.time() - 4.0, time.time() - 4.0))  # JetStream may have redelivered by now
    sent: list[str] = []

    async def publish(subject: str, data: bytes) -> None:
        sent.append(subject)

    assert await reap(tmp_path, publish, ack_wait_now=5.0) == 0
    assert sent == [] and list(tmp_path.iterdir()) == []
