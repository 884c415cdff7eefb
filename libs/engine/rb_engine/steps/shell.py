"""`shell`: run one argv command, never through a shell, with a scrubbed environment.

The child gets its own process group so a step timeout (the runner cancelling this coroutine)
kills the command and everything it started, not just the direct child. The group is led by a
small supervisor (`supervise.py`) that kills it when the worker dies, even by kill -9: a step's
processes never outlive their worker to run beside the copy another worker starts. The command
sees `RB_IDEMPOTENCY_KEY` (`<execution>:<step>:<attempt>`, the same on every delivery of an
attempt), so it can tell a re-run from a new attempt.

The command runs sandboxed (`sandbox.py`): as an unprivileged user, with CPU, memory, file-size
and process-count limits, in a fresh directory of its own that is also its HOME and TMPDIR
(removed after the attempt), with an environment that holds nothing of the worker's.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path
from typing import Any

from rb_common.step_specs import SPECS
from rb_engine.steps.base import SpecValidated, StepContext, StepFailed
from rb_engine.steps.process_groups import GROUPS, spawn_error, spawn_status, supervised_argv
from rb_engine.steps.sandbox import (
    allowed_cwd,
    announce,
    make_undumpable,
    make_workdir,
    remove_workdir,
    scrubbed_env,
    shell_sandbox,
)

OUTPUT_LIMIT = 64 * 1024
_TAIL_LIMIT = 4096
_CHUNK = 65536
_REAP_SECONDS = 5.0
_PIPE_GRACE_SECONDS = 2.0
_EXIT_POLL_SECONDS = 0.05


class _Capture:
    """Keeps the head of a stream up to the limit (and a tail for error messages)."""

    def __init__(self) -> None:
        self.head = bytearray()
        self.tail = b""
        self.total = 0

    async def drain(self, stream: asyncio.StreamReader | None) -> None:
        if stream is None:
            return
        while chunk := await stream.read(_CHUNK):
            self.total += len(chunk)
            if len(self.head) < OUTPUT_LIMIT:
                self.head += chunk[: OUTPUT_LIMIT - len(self.head)]
            self.tail = (self.tail + chunk)[-_TAIL_LIMIT:]

    @property
    def text(self) -> str:
        return bytes(self.head).decode("utf-8", errors="replace")

    @property
    def truncated(self) -> bool:
        return self.total > len(self.head)

    def last_line(self) -> str:
        lines = [ln for ln in self.tail.decode("utf-8", errors="replace").splitlines() if ln.strip()]
        return lines[-1].strip() if lines else ""


async def _feed(stream: asyncio.StreamWriter | None, data: bytes) -> None:
    if stream is None:
        return
    # The command may exit without reading its input; that is its business, not a failure.
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        stream.write(data)
        await stream.drain()
    stream.close()


async def _exited(process: asyncio.subprocess.Process) -> None:
    # Process.wait() also waits for the pipes to close on some Python versions, so it cannot
    # tell "the command exited" from "its background children still hold stdout".
    while process.returncode is None:
        await asyncio.sleep(_EXIT_POLL_SECONDS)


def _kill_group(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


class ShellStep(SpecValidated):
    spec = SPECS["shell"]

    def __init__(self) -> None:
        # The process that runs shell steps hides its memory and environment (its secrets)
        # from them: set when the executor builds its plugins, before any step starts.
        make_undumpable()

    async def run(self, inputs: dict[str, Any], ctx: StepContext) -> Any:
        command = inputs.get("command")
        if not isinstance(command, list) or not command or not all(isinstance(a, str) for a in command):
            raise StepFailed("'command' must be a non-empty list of strings", retryable=False)
        cwd = allowed_cwd(inputs["cwd"], ctx) if inputs.get("cwd") else None
        sandbox = shell_sandbox(ctx.settings)
        announce(sandbox, ctx.settings)
        make_undumpable()  # idempotent; covers plugins built before this process forked
        workdir = make_workdir(ctx.settings, sandbox)
        try:
            env = scrubbed_env(inputs.get("env"), workdir)
            env["RB_IDEMPOTENCY_KEY"] = ctx.idempotency_key
            return await self._run(command, inputs, ctx, env, sandbox.spec(cwd or workdir), workdir)
        finally:
            remove_workdir(workdir)

    async def _run(
        self,
        command: list[str],
        inputs: dict[str, Any],
        ctx: StepContext,
        env: dict[str, str],
        sandbox: dict[str, Any],
        workdir: Path,
    ) -> Any:
        stdin = inputs.get("stdin")
        status_read, status_write = os.pipe()
        try:
            process = await asyncio.create_subprocess_exec(
                *supervised_argv(command, env, status_write, sandbox),
                stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
                cwd=workdir,  # the supervisor enters the step's own `cwd` as the step user
                # Its own process group (killed as one), in the worker's session: a new session
                # would be a new scheduler autogroup on Linux, at nice 0 whatever RB_NICE is,
                # and every step would take a core from the API as an equal of the whole stack.
                # (setpgrp before the exec: uvloop's subprocesses take no `process_group`.)
                preexec_fn=os.setpgrp,
                pass_fds=(status_write,),
            )
        except OSError as exc:
            os.close(status_read)
            raise StepFailed(f"cannot start {command[0]}: {exc}", retryable=False) from None
        finally:
            os.close(status_write)
        GROUPS.add(process.pid)
        try:
            return await self._supervise(process, status_read, command, stdin, inputs, ctx)
        finally:
            GROUPS.discard(process.pid)

    async def _supervise(
        self,
        process: asyncio.subprocess.Process,
        status_read: int,
        command: list[str],
        stdin: str | None,
        inputs: dict[str, Any],
        ctx: StepContext,
    ) -> Any:
        try:
            spawned, stage = await spawn_status(status_read)
        except BaseException:
            _kill_group(process)
            raise
        if spawned != 0:
            await process.wait()
            raise StepFailed(spawn_error(spawned, command[0], stage), retryable=False)

        out, err = _Capture(), _Capture()
        io = asyncio.gather(
            _feed(process.stdin, (stdin or "").encode("utf-8")),
            out.drain(process.stdout),
            err.drain(process.stderr),
        )
        # Outcome collected on every path, so cancellation logs no "never retrieved" noise.
        io.add_done_callback(lambda f: f.cancelled() or f.exception())
        exited = asyncio.ensure_future(_exited(process))
        try:
            either: set[asyncio.Future[Any]] = {io, exited}
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
            if not io.done():
                # The command exited but background children it left hold the pipes: they get
                # a short grace, then the group dies rather than holding the step open forever.
                done, _ = await asyncio.wait({io}, timeout=_PIPE_GRACE_SECONDS)
                if not done:
                    _kill_group(process)
            await io
            exit_code = await process.wait()
        except BaseException:
            # Cancellation (step timeout) or anything else: leave nothing running behind us.
            io.cancel()
            _kill_group(process)
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            # Reap it; bounded, so a descendant that escaped the group cannot stall us.
            await asyncio.wait({asyncio.ensure_future(process.wait())}, timeout=_REAP_SECONDS)
            raise
        finally:
            exited.cancel()

        ctx.meta["exit_code"] = exit_code
        ctx.meta["stdout_truncated"] = out.truncated
        ctx.meta["stderr_truncated"] = err.truncated
        result = {"exit_code": exit_code, "stdout": out.text, "stderr": err.text}
        if exit_code != 0 and not inputs.get("allow_failure", False):
            last = err.last_line()
            raise StepFailed(f"exit code {exit_code}: {last}" if last else f"exit code {exit_code}")
        return result
