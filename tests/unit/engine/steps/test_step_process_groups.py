"""The pure pieces of shell step supervision: /proc parsing, argv, spawn errors, the registry."""

from __future__ import annotations

import errno
import json
import os
import sys

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
