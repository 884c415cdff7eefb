"""The supervisor of one shell step: runs the command and takes its whole process group down
when the worker that started it dies, however it dies (kill -9 included).

    python -I -S supervise.py PARENT_PID STATUS_FD LC_CTYPE COMMAND...

Started by the worker as the leader of a new session, so the command and everything it starts
share the supervisor's process group. The kernel signals the supervisor when its parent dies
(PR_SET_PDEATHSIG); it then SIGKILLs its group, itself included. A `sh -c 'sleep 20; echo x'`
dies too, which a death signal on the command alone would not do. The parent may die before the
request takes effect, so the parent pid is checked once it has.

LC_CTYPE is `-` if the command's environment has none, else `=` and its value: Python's locale
coercion may set or change it in the supervisor's environment, which the command must not see.

Spawning is reported on STATUS_FD: `0` once the command runs, else the errno of the failed exec
(the worker turns that into "command not found" and the like). The supervisor then exits as the
command did: with its exit code, or killed by the same signal.

Standard library only, no site packages: this runs once per shell step and starts in ~20 ms.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys

PR_SET_PDEATHSIG = 1
PARENT_DIED = signal.SIGUSR2
SPAWN_FAILED = 127
# Python ignores these at start-up; the command gets the defaults, as subprocess would give it.
RESTORED_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ, PARENT_DIED)


def kill_group() -> None:
    os.killpg(os.getpgrp(), signal.SIGKILL)


def die_with(parent: int) -> bool:
    """Ask the kernel for PARENT_DIED when the parent goes; False if that is not available
    (not Linux). Kills the group at once if the parent is already gone."""

    def on_signal(signum: int, frame: object) -> None:
        if os.getppid() != parent:  # anyone else may send the signal; only a dead parent counts
            kill_group()

    signal.signal(PARENT_DIED, on_signal)
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(PARENT_DIED), 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    if os.getppid() != parent:
        kill_group()
    return True


def exit_like(status: int) -> None:
    """Leave with the command's wait status: the same exit code, or death by the same signal."""
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        with contextlib.suppress(ImportError, OSError, ValueError):
            import resource

            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # the command's core, not ours
        with contextlib.suppress(OSError, ValueError):  # SIGKILL: default anyway
            signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        os._exit(128 + signum)  # a signal that does not kill (none should get here)
    os._exit(os.WEXITSTATUS(status))


def main(argv: list[str]) -> None:
    parent, status_fd, lc_ctype, command = int(argv[1]), int(argv[2]), argv[3], argv[4:]
    os.set_inheritable(status_fd, False)
    die_with(parent)
    env = dict(os.environ)
    if lc_ctype.startswith("="):
        env["LC_CTYPE"] = lc_ctype[1:]
    else:
        env.pop("LC_CTYPE", None)
    try:
        pid = os.posix_spawnp(command[0], command, env, setsigdef=RESTORED_SIGNALS)
    except OSError as exc:
        os.write(status_fd, f"{exc.errno or 0}\n".encode())
        os._exit(SPAWN_FAILED)
    os.write(status_fd, b"0\n")
    os.close(status_fd)
    _, status = os.waitpid(pid, 0)
    exit_like(status)


if __name__ == "__main__":
    main(sys.argv)
