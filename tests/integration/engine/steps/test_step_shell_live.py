"""shell: real processes, real signals."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from rb_common.settings import Settings
from rb_engine.steps.base import StepContext, StepFailed
from rb_engine.steps.shell import OUTPUT_LIMIT, ShellStep

pytestmark = pytest.mark.integration

MakeCtx = Callable[..., StepContext]


def _alive(pid: int) -> bool:
    """Running (a zombie has already died; only its parent has not collected it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X")


async def _until(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.01)
    return predicate()


async def test_echo(make_ctx: MakeCtx) -> None:
    ctx = make_ctx()
    result = await ShellStep().run({"command": ["echo", "hello", "$HOME; rm -rf /"]}, ctx)
    # argv, never a shell: the metacharacters arrive as literal text.
    assert result == {"exit_code": 0, "stdout": "hello $HOME; rm -rf /\n", "stderr": ""}
    assert ctx.meta["exit_code"] == 0


async def test_stdin_env_and_cwd(make_ctx: MakeCtx, step_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RB_SECRET_KEY", "must-not-leak")
    (step_dir / "work").mkdir(mode=0o777)
    result = await ShellStep().run(
        {
            "command": ["sh", "-c", 'cat; echo "mode=$MODE"; pwd; env'],
            "stdin": "line from stdin\n",
            "env": {"MODE": "dry-run"},
            "cwd": "work",
        },
        make_ctx(base_dir=step_dir, settings=Settings(shell_cwd_roots=[step_dir])),
    )
    lines = result["stdout"].splitlines()
    assert lines[:3] == ["line from stdin", "mode=dry-run", str(step_dir / "work")]
    names = {line.split("=", 1)[0] for line in lines[3:]}
    assert "RB_SECRET_KEY" not in names
    assert "must-not-leak" not in result["stdout"]
    assert names - {"PWD", "SHLVL", "_", "OLDPWD"} <= {
        "PATH",
        "HOME",
        "TMPDIR",
        "LANG",
        "LANGUAGE",
        "MODE",
        "RB_IDEMPOTENCY_KEY",
    } | {name for name in names if name.startswith("LC_")}


async def test_non_zero_exit_fails_with_last_stderr_line(make_ctx: MakeCtx) -> None:
    ctx = make_ctx()
    with pytest.raises(StepFailed) as err:
        await ShellStep().run({"command": ["sh", "-c", "echo first >&2; echo 'disk full' >&2; exit 3"]}, ctx)
    assert err.value.message == "exit code 3: disk full"
    assert ctx.meta["exit_code"] == 3


async def test_allow_failure_returns_the_result(make_ctx: MakeCtx) -> None:
    result = await ShellStep().run(
        {"command": ["sh", "-c", "echo out; echo err >&2; exit 2"], "allow_failure": True},
        make_ctx(),
    )
    assert result == {"exit_code": 2, "stdout": "out\n", "stderr": "err\n"}


async def test_command_not_found_is_not_retryable(make_ctx: MakeCtx) -> None:
    with pytest.raises(StepFailed) as err:
        await ShellStep().run({"command": ["rb-no-such-command-xyz"]}, make_ctx())
    assert err.value.retryable is False
    assert "rb-no-such-command-xyz" in err.value.message


async def test_missing_cwd_is_not_retryable(make_ctx: MakeCtx, tmp_path: Path) -> None:
    with pytest.raises(StepFailed) as err:
        await ShellStep().run(
            {"command": ["true"], "cwd": "nope"}, make_ctx(settings=Settings(shell_cwd_roots=[tmp_path]))
        )
    assert err.value.retryable is False
    assert err.value.message == f"working directory not found: {tmp_path.resolve() / 'nope'}"


async def test_output_is_truncated(make_ctx: MakeCtx) -> None:
    ctx = make_ctx()
    result = await ShellStep().run(
        {"command": ["sh", "-c", "yes | head -c 300000; yes e | head -c 200000 >&2"]}, ctx
    )
    assert len(result["stdout"]) == OUTPUT_LIMIT
    assert len(result["stderr"]) == OUTPUT_LIMIT
    assert ctx.meta["stdout_truncated"] is True
    assert ctx.meta["stderr_truncated"] is True


async def test_cancellation_kills_the_whole_process_group(make_ctx: MakeCtx, step_dir: Path) -> None:
    pidfile = step_dir / "pids"
    script = f"sleep 30 & echo $$ $! > {pidfile}.tmp && mv {pidfile}.tmp {pidfile}; wait"
    task = asyncio.create_task(ShellStep().run({"command": ["sh", "-c", script]}, make_ctx()))
    assert await _until(pidfile.exists, timeout=5), "command never started"
    shell_pid, sleep_pid = map(int, pidfile.read_text().split())
    assert _alive(shell_pid) and _alive(sleep_pid)

    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, timeout=5)
    gone = await _until(lambda: not _alive(shell_pid) and not _alive(sleep_pid), timeout=1)
    elapsed = time.monotonic() - started
    assert gone, "sh or its background sleep survived the cancellation"
    assert elapsed < 1.0


async def test_runner_style_timeout_kills_sleep(make_ctx: MakeCtx) -> None:
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(ShellStep().run({"command": ["sleep", "30"]}, make_ctx()), 0.2)
    assert time.monotonic() - started < 1.2


async def test_background_child_holding_the_pipes_does_not_hang_the_step(
    make_ctx: MakeCtx, step_dir: Path
) -> None:
    pidfile = step_dir / "bg"
    started = time.monotonic()
    result = await ShellStep().run(
        {"command": ["sh", "-c", f"sleep 30 & echo $! > {pidfile}; echo done"]}, make_ctx()
    )
    assert result == {"exit_code": 0, "stdout": "done\n", "stderr": ""}
    assert time.monotonic() - started < 5
    assert await _until(lambda: not _alive(int(pidfile.read_text())), timeout=1)
