"""shell sandbox: the step user, its limits, its environment and directory, and what it cannot
read of the worker (issue 12, part 7). Real processes: the tests run as root in CI, so the
steps here really run as `nobody`."""

from __future__ import annotations

import ctypes
import os
import pwd
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from rb_common.settings import Settings
from rb_engine.steps.base import StepContext, StepFailed
from rb_engine.steps.shell import ShellStep

pytestmark = pytest.mark.integration

MakeCtx = Callable[..., StepContext]
AS_ROOT = os.geteuid() == 0
PR_GET_DUMPABLE = 3


def step_uid() -> int:
    return pwd.getpwnam("nobody").pw_uid if AS_ROOT else os.geteuid()


async def run(ctx: StepContext, *command: str, **inputs: object) -> dict[str, object]:
    result: dict[str, object] = await ShellStep().run({"command": list(command), **inputs}, ctx)
    return result


async def test_the_step_never_runs_as_root(make_ctx: MakeCtx) -> None:
    result = await run(make_ctx(), "sh", "-c", "id -u; id -g; id -G")
    uid, gid, groups = str(result["stdout"]).split("\n")[:3]
    assert int(uid) == step_uid()
    if AS_ROOT:
        assert int(uid) != 0
        assert int(gid) == pwd.getpwnam("nobody").pw_gid
        assert groups.split() == [gid]  # supplementary groups dropped (root's are gone)


async def test_the_step_cannot_read_the_workers_environment_or_memory(
    make_ctx: MakeCtx, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RB_SECRET_PROBE", "must-not-leak-1")
    worker = os.getpid()
    result = await run(
        make_ctx(),
        "sh",
        "-c",
        f"cat /proc/{worker}/environ; echo rc=$?; head -c 16 /proc/{worker}/mem; echo rc=$?; "
        'cat /proc/$PPID/environ; echo "parent rc=$?"',
        allow_failure=True,
    )
    out, err = str(result["stdout"]), str(result["stderr"])
    assert "must-not-leak-1" not in out + err
    assert f"cat: /proc/{worker}/environ: Permission denied" in err
    assert out.count("rc=1") == 3  # the worker's environ and memory, and the supervisor's environ
    # The worker hides itself even from a step of its own uid (a worker that is not root).
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == 0


async def test_the_step_sees_no_rb_variables_and_none_of_the_workers(
    make_ctx: MakeCtx, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RB_SECRET_TOKEN", "must-not-leak-2")
    monkeypatch.setenv("RB_DATABASE_URL", "postgresql://rb:must-not-leak-3@db/rb")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "must-not-leak-4")
    result = await run(make_ctx(idempotency_key="e:s:1"), "env", env={"MODE": "dry-run"})
    env = dict(line.split("=", 1) for line in str(result["stdout"]).splitlines())
    assert [name for name in env if name.startswith("RB_")] == ["RB_IDEMPOTENCY_KEY"]
    assert env["RB_IDEMPOTENCY_KEY"] == "e:s:1"
    assert "must-not-leak" not in str(result["stdout"])
    allowed = {"PATH", "HOME", "TMPDIR", "LANG", "LANGUAGE", "MODE", "RB_IDEMPOTENCY_KEY"}
    assert {name for name in env if not name.startswith("LC_")} <= allowed


async def test_the_step_works_in_a_fresh_directory_of_its_own_removed_after(make_ctx: MakeCtx) -> None:
    ctx = make_ctx()
    result = await run(
        ctx, "sh", "-c", 'pwd; echo "$HOME $TMPDIR"; stat -c "%u %a" .; ls -A | wc -l; echo x > f; ls'
    )
    cwd, home_tmp, owner_mode, entries, listing = str(result["stdout"]).splitlines()
    assert home_tmp == f"{cwd} {cwd}"
    assert owner_mode == f"{step_uid()} 700"
    assert entries == "0" and listing == "f"
    assert not Path(cwd).exists()
    again = await run(ctx, "pwd")
    assert str(again["stdout"]).strip() != cwd  # a new one per attempt


async def test_memory_limit(make_ctx: MakeCtx) -> None:
    ctx = make_ctx(settings=Settings(shell_memory_mb=128))
    with pytest.raises(StepFailed) as err:
        await run(ctx, "dd", "if=/dev/zero", "of=/dev/null", "bs=512M", "count=1")
    assert "memory exhausted" in err.value.message
    # Within the limit, the same works.
    await run(ctx, "dd", "if=/dev/zero", "of=/dev/null", "bs=16M", "count=1")


async def test_file_size_limit(make_ctx: MakeCtx) -> None:
    ctx = make_ctx(settings=Settings(shell_file_size_mb=1))
    result = await run(ctx, "sh", "-c", "head -c 2000000 /dev/zero > big", allow_failure=True)
    assert result["exit_code"] != 0  # SIGXFSZ, or "File too large"


async def test_cpu_limit(make_ctx: MakeCtx) -> None:
    ctx = make_ctx(settings=Settings(shell_cpu_seconds=1))
    result = await run(ctx, "sh", "-c", "while :; do :; done", allow_failure=True)
    assert result["exit_code"] in (-signal.SIGXCPU, -signal.SIGKILL)


async def test_process_count_limit_is_set_per_uid(make_ctx: MakeCtx) -> None:
    ctx = make_ctx(settings=Settings(shell_max_processes=77, shell_cpu_seconds=123))
    result = await run(ctx, "cat", "/proc/self/limits")
    limits = {line[:26].strip(): line[26:].split()[:2] for line in str(result["stdout"]).splitlines()[1:]}
    assert limits["Max cpu time"] == ["123", "123"]
    assert limits["Max address space"] == [str(1024 * 1024 * 1024)] * 2  # the default, 1024 MB
    assert limits["Max file size"] == [str(1024 * 1024 * 1024)] * 2
    # Only under a step user of its own: a worker that is not root shares its uid with the step.
    if AS_ROOT:
        assert limits["Max processes"] == ["77", "77"]


async def test_cwd_only_inside_the_allowed_roots(make_ctx: MakeCtx, step_dir: Path, tmp_path: Path) -> None:
    (step_dir / "work").mkdir(mode=0o777)
    (step_dir / "escape").symlink_to("/etc")
    ctx = make_ctx(base_dir=step_dir, settings=Settings(shell_cwd_roots=[step_dir]))
    assert (await run(ctx, "pwd", cwd="work"))["stdout"] == f"{step_dir / 'work'}\n"
    assert (await run(ctx, "pwd", cwd=str(step_dir)))["stdout"] == f"{step_dir}\n"
    for outside in ("/etc", "escape", "../", "/"):
        with pytest.raises(StepFailed) as err:
            await run(ctx, "pwd", cwd=outside)
        assert "outside the allowed roots" in err.value.message and err.value.retryable is False
    with pytest.raises(StepFailed) as err:
        await run(make_ctx(base_dir=step_dir), "pwd", cwd="work")
    assert "RB_SHELL_CWD_ROOTS: none" in err.value.message
    if AS_ROOT:
        # Inside a root, but the step user may not enter it: entered as the step user, it fails.
        private = tmp_path / "private"
        private.mkdir(mode=0o700)
        ctx = make_ctx(base_dir=tmp_path, settings=Settings(shell_cwd_roots=[tmp_path]))
        with pytest.raises(StepFailed) as err:
            await run(ctx, "pwd", cwd="private")
        assert err.value.message.startswith("cannot enter the working directory as the step user")


@pytest.mark.skipif(not AS_ROOT, reason="choosing the step user needs a worker running as root")
async def test_the_step_user_is_configurable_but_never_root(make_ctx: MakeCtx) -> None:
    for user, message in (("root", "is root"), ("rb-no-such-user-xyz", "no such user")):
        with pytest.raises(StepFailed) as err:
            await run(make_ctx(settings=Settings(shell_user=user)), "true")
        assert message in err.value.message and err.value.retryable is False
    daemon = pwd.getpwnam("daemon")
    result = await run(make_ctx(settings=Settings(shell_user="daemon")), "id", "-u")
    assert result["stdout"] == f"{daemon.pw_uid}\n"
