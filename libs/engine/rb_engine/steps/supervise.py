"""The supervisor of one shell step: runs the command and takes its whole process group down
when the worker that started it dies, however it dies (kill -9 included).

    python -I -S supervise.py PARENT_PID STATUS_FD LC_CTYPE SANDBOX COMMAND...

Started by the worker as the leader of a new process group (in the worker's session, so in its
scheduler autogroup and at its niceness), so the command and everything it starts share the
supervisor's process group. It first gives up the worker's controlling terminal, if any (`rb up`
in a terminal): the step cannot open the operator's /dev/tty. The kernel signals the supervisor when its parent dies
(PR_SET_PDEATHSIG); it then SIGKILLs its group, itself included. A `sh -c 'sleep 20; echo x'`
dies too, which a death signal on the command alone would not do. The parent may die before the
request takes effect, so the parent pid is checked once it has.

LC_CTYPE is `-` if the command's environment has none, else `=` and its value: Python's locale
coercion may set or change it in the supervisor's environment, which the command must not see.

SANDBOX is JSON from the worker (rb_engine.steps.sandbox): `limits` ([resource name, soft, hard]),
`uid`/`gid` of the step user (null: stay the worker's user) and `cwd`. The supervisor starts as
the worker's user and, in this order: sets the limits; drops to the step user (setgroups([]),
setgid, setuid: for good, real, effective and saved ids); only then asks for the parent-death
signal, since a uid change clears it, and checks the parent is still there; then enters `cwd`
as the step user.

Spawning is reported on STATUS_FD: `0` once the command runs, else the errno of the failed exec
(the worker turns that into "command not found" and the like), or `ERRNO STAGE` when the sandbox
could not be entered (STAGE `limits`, `user` or `cwd`). The supervisor then exits as the
command did: with its exit code, or killed by the same signal.

Standard library only, no site packages: this runs once per shell step and starts in ~20 ms.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not imported at run time: this starts once per step
    from typing import Any

PR_SET_PDEATHSIG = 1
PARENT_DIED = signal.SIGUSR2
SPAWN_FAILED = 127
# Python ignores these at start-up; the command gets the defaults, as subprocess would give it.
RESTORED_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ, PARENT_DIED)


def kill_group() -> None:
    os.killpg(os.getpgrp(), signal.SIGKILL)


def load_libc() -> Any:
    """libc through ctypes, or None (not Linux). Loaded before the switch to the step user,
    who may not be able to read the interpreter's standard library."""
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True)
    except (ImportError, OSError):
        return None


def die_with(parent: int, libc: Any = None) -> bool:
    """Ask the kernel for PARENT_DIED when the parent goes; False if that is not available
    (not Linux). Kills the group at once if the parent is already gone."""

    def on_signal(signum: int, frame: object) -> None:
        if os.getppid() != parent:  # anyone else may send the signal; only a dead parent counts
            kill_group()

    signal.signal(PARENT_DIED, on_signal)
    libc = libc if libc is not None else load_libc()
    try:
        if libc is None or libc.prctl(PR_SET_PDEATHSIG, int(PARENT_DIED), 0, 0, 0) != 0:
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


def drop_terminal() -> None:
    """Give up the controlling terminal, if the worker has one (`rb up` in a terminal): the step
    stays in the worker's session (its scheduler autogroup), and must not reach the operator's
    terminal through /dev/tty. TIOCNOTTY by a process that is not the session leader detaches
    only that process, and what it starts inherits that."""
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError:  # none: a service under systemd, Kubernetes, a test
        return
    try:
        import fcntl
        import termios

        fcntl.ioctl(fd, termios.TIOCNOTTY)
    except (ImportError, OSError):
        pass
    finally:
        os.close(fd)


class _SandboxError(Exception):
    def __init__(self, stage: str, code: int) -> None:
        super().__init__(stage)
        self.stage, self.code = stage, code


def enter_sandbox(sandbox: dict[str, Any]) -> None:
    """Limits, then the step user for good; _SandboxError names the stage that failed."""
    import resource

    stage = "limits"
    try:
        for name, soft, hard in sandbox.get("limits") or []:
            resource.setrlimit(getattr(resource, name), (soft, hard))
        uid, gid = sandbox.get("uid"), sandbox.get("gid")
        stage = "user"
        if isinstance(uid, int) and isinstance(gid, int):
            os.setgroups([])
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)
            if os.getresuid() != (uid, uid, uid) or os.getresgid() != (gid, gid, gid) or os.getgroups():
                raise PermissionError(1, "the step user's ids did not stick")
    except (OSError, ValueError) as exc:
        raise _SandboxError(stage, getattr(exc, "errno", None) or 1) from None


def main(argv: list[str]) -> None:
    parent, status_fd, lc_ctype, sandbox = int(argv[1]), int(argv[2]), argv[3], json.loads(argv[4])
    command = argv[5:]
    os.set_inheritable(status_fd, False)
    # Everything imported from here on is imported now, as the worker's user: the step user
    # may not be able to read the standard library.
    import resource  # noqa: F401 - exit_like's, cached

    libc = load_libc()
    drop_terminal()
    try:
        enter_sandbox(sandbox)
    except _SandboxError as exc:
        os.write(status_fd, f"{exc.code} {exc.stage}\n".encode())
        os._exit(SPAWN_FAILED)
    # After the uid switch, which clears the parent-death signal.
    die_with(parent, libc)
    cwd = sandbox.get("cwd")
    if isinstance(cwd, str):
        try:
            os.chdir(cwd)
        except OSError as exc:
            os.write(status_fd, f"{exc.errno or 0} cwd\n".encode())
            os._exit(SPAWN_FAILED)
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
