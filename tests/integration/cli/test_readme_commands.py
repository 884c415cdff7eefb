"""Every command the README shows runs, so the README cannot drift from the CLI.

The README's ```bash blocks are parsed and each command is run, in README order, in ONE bash
process (so `export`, `KEY=$(...)` and `t=...` carry over to the next line, as in a terminal),
from a scratch directory holding `./rb`, `runbooks/` and the stack's `.rb/`. `rb up` runs in
the background on a free port, on this session's NATS in a namespace of its own. Placeholders
(`<execution id>`, `<key id>`) are filled from earlier output; the README's fixed addresses and
scratch paths are mapped to this test's (SUBSTITUTIONS). What does not run is listed in SKIPPED,
with the reason, and a README command that is neither run nor listed fails the test.
"""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from test_rb_up import free_port, start_up

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
README = REPO / "README.md"

SKIPPED = {
    "./rb up": "started in the background by this test, with the same environment",
    "./scripts/test": "the test suite itself; .ci/run runs exactly this command",
    "./rb pause <execution id>": "needs a run that is still going; tests/integration/services/test_flow_live.py",
    "./rb cancel <execution id>": "needs a run that is still going; tests/integration/services/test_flow_live.py",
    "./rb retry <execution id> <step id>": "needs a FAILED run; tests/integration/services/test_flow_live.py",
}
COMMAND_TIMEOUT = 120.0
EXECUTION_ID = re.compile(r"execution id: ([0-9a-f]{32})")
KEY_ID = re.compile(r"^key (\S+) for ", re.MULTILINE)


def readme_commands(text: str) -> list[str]:
    """The commands of the README's bash blocks: continuation lines joined, comments kept (bash
    ignores them)."""
    commands: list[str] = []
    for block in re.findall(r"^```bash\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE):
        pending = ""
        for line in block.splitlines():
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1] + " "
                continue
            command = (pending + line).strip()
            pending = ""
            if command and not command.startswith("#"):
                commands.append(command)
    return commands


def bare(command: str) -> str:
    """The command without its trailing comment (for the skip list)."""
    return re.sub(r"\s+#\s.*$", "", command).strip()


class Shell:
    """One bash process; each command's stdout/stderr go to files, its exit code to a marker."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.dir = cwd
        (cwd / ".stdin").write_text("a-test-secret-value\n")
        self.process = subprocess.Popen(
            ["bash", "--noprofile", "--norc"],
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )

    def run(self, command: str) -> tuple[int, str, str]:
        assert self.process.stdin and self.process.stdout
        marker = f"__rc_{uuid.uuid4().hex}="
        self.process.stdin.write(f"{{ {command}\n}} >.stdout 2>.stderr <.stdin; echo {marker}$?\n")
        self.process.stdin.flush()
        deadline = time.monotonic() + COMMAND_TIMEOUT
        while True:
            remaining = deadline - time.monotonic()
            ready, _, _ = select.select([self.process.stdout], [], [], max(remaining, 0))
            if not ready:
                self.close()
                raise AssertionError(f"timed out after {COMMAND_TIMEOUT}s: {command}")
            line = self.process.stdout.readline()
            if not line:
                raise AssertionError(f"the shell exited running: {command}")
            if line.startswith(marker):
                code = int(line[len(marker) :].strip())
                return code, (self.dir / ".stdout").read_text(), (self.dir / ".stderr").read_text()

    def close(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)


def test_readme_parser_sees_blocks_and_continuations() -> None:
    text = "x\n```bash\na \\\n  b  # c\n# only a comment\n```\n```yaml\nk: v\n```\n```bash\nd\n```\n"
    assert readme_commands(text) == ["a    b  # c", "d"]
    assert bare("./rb up              # the stack") == "./rb up"


@dataclass
class Stack:
    work: Path
    scratch: Path
    env: dict[str, str]
    api_port: int


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """`rb up` in the background, in a scratch directory as a newcomer's clone: `./rb`,
    `runbooks/`, and `.rb/` (RB_HOME's default) created there."""
    scratch = tmp_path_factory.mktemp("readme")
    work = scratch / "work"
    work.mkdir()
    (work / "runbooks").symlink_to(REPO / "runbooks")
    (work / "rb").symlink_to(Path(sys.executable).parent / "rb")
    api_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RB_") or k == "RB_TEST_NATS_URL"}
    env.update(
        {
            "RB_NATS_URL": os.environ["RB_TEST_NATS_URL"],
            "RB_NAMESPACE": f"t{uuid.uuid4().hex[:10]}",
            "RB_API_ADDR": f"127.0.0.1:{api_port}",
            "RB_WEBHOOK_SECRET": "readme-webhook-secret-0123456789",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
            "NO_COLOR": "1",
            "COLUMNS": "200",
        }
    )
    cwd = os.getcwd()
    os.chdir(work)  # start_up runs `rb up` here: RB_HOME defaults to ./.rb, as in the README
    try:
        process, _, _ = start_up(env)
    finally:
        os.chdir(cwd)
    try:
        yield Stack(work, scratch, env, api_port)
    finally:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


@pytest.mark.timeout(420)  # ~40 commands, three acceptance packs (one drives Chromium): past the 120 s default
def test_every_readme_command_runs(stack: Stack) -> None:
    substitutions = {
        "localhost:8080": f"127.0.0.1:{stack.api_port}",
        "127.0.0.1:8080": f"127.0.0.1:{stack.api_port}",
        "/tmp/rb-drafts": str(stack.scratch / "drafts"),
        "/tmp/rb-fixtures/": f"{stack.scratch / 'fixtures'}/",
    }
    commands = readme_commands(README.read_text(encoding="utf-8"))
    assert len(commands) > 20, commands
    unknown_skips = set(SKIPPED) - {bare(c) for c in commands}
    assert not unknown_skips, f"SKIPPED lists commands the README no longer has: {unknown_skips}"
    shell = Shell(stack.work, stack.env)
    ran: list[str] = []
    output = ""
    try:
        for command in commands:
            if bare(command) in SKIPPED:
                continue
            for old, new in substitutions.items():
                command = command.replace(old, new)
            if "<execution id>" in command:
                ids = EXECUTION_ID.findall(output)
                assert ids, f"no execution id printed before: {command}"
                command = command.replace("<execution id>", ids[-1])
            if "<key id>" in command:
                ids = KEY_ID.findall(output)
                assert ids, f"no key id printed before: {command}"
                command = command.replace("<key id>", ids[-1])
            assert "<" not in bare(command), f"unfilled placeholder: {command}"
            code, out, err = shell.run(command)
            output += out + err
            assert code == 0, f"{command}\nexit {code}\n{out}\n{err}"
            assert "Traceback" not in out + err, f"{command}\n{out}\n{err}"
            ran.append(command)
    finally:
        shell.close()
    assert len(ran) + len(SKIPPED) == len(commands)
    assert re.search(r"\d+/\d+ replays verified", output), "replay --all ends with a summary line"


def test_trigger_waits_for_a_failing_run_and_logs_resolve_a_prefix(stack: Stack) -> None:
    def rb(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["./rb", *args], cwd=stack.work, env=stack.env, capture_output=True, text=True, timeout=120
        )

    refused = rb("trigger", "rb-000-hello", "-p", "wait_seconds=60", "--wait")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    execution_id = EXECUTION_ID.findall(refused.stdout)[0]
    assert f"execution {execution_id} ABORTED" in refused.stdout

    followed = rb("trigger", "rb-000-hello", "-f")
    assert followed.returncode == 0 and "execution.succeeded" in followed.stdout, followed.stdout

    logs = rb("logs", execution_id[:8])
    assert logs.returncode == 0, logs.stderr
    assert "execution.aborted" in logs.stdout and "sane_wait" in logs.stdout

    listing = rb("executions")
    assert listing.stdout.splitlines()[0].split() == ["EXECUTION", "RUNBOOK", "STATUS", "STARTED"]
    assert execution_id in listing.stdout

    missing = rb("logs", "0000000")
    assert missing.returncode == 2 and missing.stderr.startswith("error: no execution '0000000'")
