"""Where a shell step runs: as which user, with which limits, environment and directory.

The worker decides; the step's supervisor (`supervise.py`, which starts as the worker's user)
applies it before it starts the command: resource limits, then `setgroups([])`, `setgid`,
`setuid` to the step user, then the parent-death signal (a uid change clears it), then the
working directory (entered as the step user, so a directory that user may not enter fails the
step instead of being entered with the worker's rights).

What this gives and what it does not is in the README ("Shell steps run sandboxed").
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import pwd
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rb_common.settings import Settings
from rb_engine.steps.base import StepContext, StepFailed
from rb_engine.steps.process_groups import start_time

log = logging.getLogger(__name__)

DEFAULT_USER = "nobody"
_DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
_PR_SET_DUMPABLE = 4
_MB = 1024 * 1024


@dataclass(frozen=True)
class Sandbox:
    """The step user (uid None: the worker's own, no switch) and the limits (resource name,
    soft, hard) every process of the step starts with."""

    user: str
    uid: int | None
    gid: int | None
    limits: tuple[tuple[str, int, int], ...]

    def spec(self, cwd: Path) -> dict[str, Any]:
        """What the supervisor needs, as it takes it (JSON on its command line)."""
        return {
            "uid": self.uid,
            "gid": self.gid,
            "limits": [list(limit) for limit in self.limits],
            "cwd": str(cwd),
        }


def shell_sandbox(settings: Settings) -> Sandbox:
    """The sandbox these settings ask for, on this process; StepFailed when they cannot be met."""
    limits = [
        ("RLIMIT_CPU", settings.shell_cpu_seconds, settings.shell_cpu_seconds),
        ("RLIMIT_AS", settings.shell_memory_mb * _MB, settings.shell_memory_mb * _MB),
        ("RLIMIT_FSIZE", settings.shell_file_size_mb * _MB, settings.shell_file_size_mb * _MB),
    ]
    if os.geteuid() != 0:
        me = _user_name(os.geteuid())
        return Sandbox(user=me, uid=None, gid=None, limits=tuple(limits))
    name = settings.shell_user or DEFAULT_USER
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise StepFailed(f"RB_SHELL_USER: no such user {name!r} on this host", retryable=False) from None
    if entry.pw_uid == 0:
        raise StepFailed(f"RB_SHELL_USER: {name!r} is root; shell steps never run as root", retryable=False)
    # Per uid: every process and thread of this user on the host counts (README).
    limits.append(("RLIMIT_NPROC", settings.shell_max_processes, settings.shell_max_processes))
    return Sandbox(user=name, uid=entry.pw_uid, gid=entry.pw_gid, limits=tuple(limits))


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def make_undumpable() -> bool:
    """prctl(PR_SET_DUMPABLE, 0) on this process: no core dumps, and no process without
    CAP_SYS_PTRACE (a step running as this very user included) may read its memory or its
    /proc/PID/environ. False where that is not available (not Linux)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


_announced: set[tuple[str, int | None]] = set()


def announce(sandbox: Sandbox, settings: Settings) -> None:
    """One log line per process and sandbox: who shell steps run as, and with what limits."""
    key = (sandbox.user, sandbox.uid)
    if key in _announced:
        return
    _announced.add(key)
    sweep_workdirs(settings)
    limits = ", ".join(f"{name.removeprefix('RLIMIT_')}={soft}" for name, soft, _ in sandbox.limits)
    if sandbox.uid is None:
        ignored = f" (RB_SHELL_USER={settings.shell_user} ignored)" if settings.shell_user else ""
        log.warning(
            "the worker does not run as root: shell steps run as its own user %s%s, without a "
            "uid of their own and without a process-count limit; limits: %s",
            sandbox.user,
            ignored,
            limits,
        )
    else:
        log.info("shell steps run as %s (uid %d); limits: %s", sandbox.user, sandbox.uid, limits)


def _owner_tag(pid: int) -> str:
    return f"rb-step-{pid}-{start_time(pid)}-"


def sweep_workdirs(settings: Settings) -> int:
    """Remove the attempt directories that processes no longer running left behind (a worker
    killed mid-step cannot remove its own); named `rb-step-<pid>-<start time>-*`, so a pid used
    again is never mistaken for their owner. Returns how many were removed."""
    root = settings.shell_work_dir or Path(tempfile.gettempdir())
    removed = 0
    with contextlib.suppress(OSError):
        for entry in root.iterdir():
            parts = entry.name.split("-", 4)
            if len(parts) < 5 or parts[:2] != ["rb", "step"] or not parts[2].isdigit():
                continue
            if entry.name.startswith(_owner_tag(int(parts[2]))) or not entry.is_dir() or entry.is_symlink():
                continue  # its process still runs
            remove_workdir(entry)
            removed += 1
    return removed


def make_workdir(settings: Settings, sandbox: Sandbox) -> Path:
    """A fresh directory for one attempt (mode 0700), owned by the step user."""
    root = settings.shell_work_dir
    if root is not None:
        root.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=_owner_tag(os.getpid()), dir=root))
    if sandbox.uid is not None and sandbox.gid is not None:
        os.chown(path, sandbox.uid, sandbox.gid)
    return path


def remove_workdir(path: Path) -> None:
    """Remove the attempt's directory, whatever modes the step left in it."""

    def writable_then_retry(function: Any, name: str, _: Any) -> None:
        with contextlib.suppress(OSError):
            parent = os.path.dirname(name)
            os.chmod(parent, os.stat(parent).st_mode | stat.S_IRWXU)
            if os.path.isdir(name) and not os.path.islink(name):
                os.chmod(name, os.stat(name).st_mode | stat.S_IRWXU)
            function(name)

    shutil.rmtree(path, onerror=writable_then_retry)
    with contextlib.suppress(OSError):
        shutil.rmtree(path, ignore_errors=True)


def allowed_cwd(cwd: str, ctx: StepContext) -> Path:
    """The `cwd` input as a directory inside one of RB_SHELL_CWD_ROOTS (relative names are
    relative to the runbook's directory), symlinks resolved; StepFailed otherwise."""
    path = Path(cwd)
    resolved = (path if path.is_absolute() else ctx.base_dir / path).resolve()
    roots = [root.resolve() for root in ctx.settings.shell_cwd_roots]
    if not any(resolved == root or root in resolved.parents for root in roots):
        named = ", ".join(str(root) for root in roots) or "none"
        raise StepFailed(
            f"working directory {resolved} is outside the allowed roots (RB_SHELL_CWD_ROOTS: {named})",
            retryable=False,
        )
    if not resolved.is_dir():
        raise StepFailed(f"working directory not found: {resolved}", retryable=False)
    return resolved


def scrubbed_env(extra: dict[str, str] | None, home: Path) -> dict[str, str]:
    """Only what commands need to be found and to print, and a home of the step's own; the
    worker's RB_* settings and secrets, and anything else it has, stay out."""
    env = {"PATH": os.environ.get("PATH") or _DEFAULT_PATH, "HOME": str(home), "TMPDIR": str(home)}
    for name, value in os.environ.items():
        if name in ("LANG", "LANGUAGE") or name.startswith("LC_"):
            env[name] = value
    env.update(extra or {})
    return env
