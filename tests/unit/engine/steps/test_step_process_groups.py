"""The pure pieces of shell step supervision: /proc parsing, argv, spawn errors, the registry."""

from __future__ import annotations

import errno
import json
import os
import pty
import sys

import pytest

from rb_engine.steps import supervise
from rb_engine.steps.process_groups import (
    SUPERVISOR,
    ProcessGroups,
    parse_start_time,
    spawn_error,
    start_time,
    supervised_argv,
)


def stat_line(name: str, start: int) -> bytes:
    fields = ["S", "1", "2", "3"] + ["0"] * 15 + [str(start), "99"]  # fields 3..23
    return f"4242 ({name}) ".encode() + " ".join(fields).encode()


def test_start_time_is_field_22_whatever_the_command_name() -> None:
    assert parse_start_time(stat_line("sleep", 123456)) == 123456
    assert parse_start_time(stat_line("a) (b c", 77)) == 77
    assert parse_start_time(b"garbage") is None


def test_start_time_of_this_process_and_of_none() -> None:
    assert start_time(os.getpid()) == start_time(os.getpid())
    assert isinstance(start_time(os.getpid()), int)
    assert start_time(2**22 + 12345) is None  # above pid_max: no such process


def test_supervised_argv_runs_the_supervisor_isolated_with_the_command_last() -> None:
    argv = supervised_argv(["echo", "hi"], {"PATH": "/bin"}, 7)
    assert argv[:4] == [sys.executable, "-I", "-S", str(SUPERVISOR)]
    assert argv[4:] == [str(os.getpid()), "7", "-", "{}", "echo", "hi"]
    sandboxed = supervised_argv(["true"], {}, 7, {"uid": 65534, "gid": 65534, "limits": [], "cwd": "/w"})
    assert json.loads(sandboxed[7]) == {"uid": 65534, "gid": 65534, "limits": [], "cwd": "/w"}
    # The step's own LC_CTYPE goes to the command as it is, whatever Python's locale coercion does.
    assert supervised_argv(["true"], {"LC_CTYPE": "C"}, 7)[6] == "=C"


def test_spawn_errors_read_like_the_ones_before_the_supervisor() -> None:
    assert spawn_error(errno.ENOENT, "nope") == "command not found: nope"
    assert spawn_error(errno.EACCES, "x.sh") == "command not executable: x.sh"
    assert spawn_error(errno.ENOEXEC, "x") == f"cannot start x: {os.strerror(errno.ENOEXEC)}"
    assert "supervisor" in spawn_error(None, "x")
    # The sandbox the supervisor could not enter, by stage.
    assert spawn_error(errno.EACCES, "x", "cwd") == (
        f"cannot enter the working directory as the step user: {os.strerror(errno.EACCES)}"
    )
    assert spawn_error(errno.EPERM, "x", "user").startswith("cannot switch to the step user: ")


def test_the_registry_tells_its_listeners_of_every_change() -> None:
    groups = ProcessGroups()
    calls: list[dict[int, int | None]] = []
    groups.listeners.append(lambda: calls.append(dict(groups.running)))
    groups.add(os.getpid())
    groups.discard(os.getpid())
    groups.discard(os.getpid())  # not there any more: no news
    assert calls == [{os.getpid(): start_time(os.getpid())}, {}]


@pytest.mark.skipif(not hasattr(os, "fork") or not os.path.exists("/dev/ptmx"), reason="POSIX ptys")
def test_the_supervisor_gives_up_the_workers_terminal() -> None:
    """A step stays in the worker's session (its scheduler autogroup); under `rb up` in a
    terminal that session has the operator's terminal, which the step must not reach."""
    pid, fd = pty.fork()
    if pid == 0:  # a session leader with the pty as its terminal, like `rb up` in a terminal
        child = os.fork()
        if child == 0:  # the supervisor: in that session, not its leader
            os.close(os.open("/dev/tty", os.O_RDWR))  # it has the terminal
            supervise.drop_terminal()
            try:
                os.close(os.open("/dev/tty", os.O_RDWR))
                os.write(1, b"after: open\n")  # fd 1 is the pty (sys.stdout is pytest's)
            except OSError as exc:
                os.write(1, f"after: errno {exc.errno}\n".encode())
            os._exit(0)
        os.waitpid(child, 0)
        os._exit(0)
    out = b""
    while chunk := _read(fd):
        out += chunk
    os.waitpid(pid, 0)
    assert f"after: errno {errno.ENXIO}" in out.decode(), out


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 1024)
    except OSError:  # EIO once the child side is closed
        return b""
