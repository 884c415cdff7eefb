"""`rb up` from scratch: its own NATS, SQLite under RB_HOME, every service, an example run."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]


BOOTSTRAP_KEY = "rbk_integration-bootstrap-admin-key-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def children_niceness(pid: int) -> dict[str, int]:
    """Each child process of `pid` (the service it serves, or the program's name) and its
    niceness (field 19 of /proc/<pid>/stat)."""
    found = {}
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        argv = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        name = argv[4].decode() if b"serve" in argv else Path(argv[0].decode()).name
        stat = Path(f"/proc/{child}/stat").read_text()
        found[name] = int(stat.rsplit(")", 1)[1].split()[16])
    return found


def start_up(env: dict[str, str]) -> tuple[subprocess.Popen[str], queue.Queue[str], list[str]]:
    """`rb up` in the background: the process, its remaining output lines, and what it printed
    until it said it is up."""
    process = subprocess.Popen(
        [sys.executable, "-m", "rb_cli", "up"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout or []], daemon=True).start()
    seen: list[str] = []
    deadline = time.monotonic() + 180  # rb up's own limit for the API (two processes, one after the other)
    while not any("press Ctrl-C" in line for line in seen):
        if time.monotonic() > deadline or process.poll() is not None:
            os.killpg(process.pid, signal.SIGKILL)
            raise AssertionError("rb up did not come up:\n" + "".join(seen))
        try:
            seen.append(lines.get(timeout=1))
        except queue.Empty:
            continue
    return process, lines, seen


def stop_up(process: subprocess.Popen[str]) -> None:
    """Ctrl-C to `rb up`'s process group, and its exit within 30 s (else SIGKILL, and fail)."""
    os.killpg(process.pid, signal.SIGINT)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        raise


def test_rb_up_serves_the_api_and_runs_an_example_end_to_end(tmp_path: Path) -> None:
    api_port, nats_port = free_port(), free_port()
    env = {
        **os.environ,
        "RB_HOME": str(tmp_path / "home"),
        "RB_NATS_URL": f"nats://127.0.0.1:{nats_port}",
        "RB_API_ADDR": f"127.0.0.1:{api_port}",
        "RB_RUNBOOKS_DIR": str(REPO / "runbooks"),
        "RB_API_URL": f"http://127.0.0.1:{api_port}",
    }
    # No key given: `rb up` makes the admin key, prints it once, and the CLI reads RB_HOME/admin.key.
    for name in ("RB_DATABASE_URL", "RB_BOOTSTRAP_ADMIN_KEY", "RB_API_KEY"):
        env.pop(name, None)
    process, lines, seen = start_up(env)
    try:
        output = "".join(seen)
        assert f"API http://127.0.0.1:{api_port}/api/v1" in output
        assert "registered rb-000-hello" in output
        assert f"web console: http://127.0.0.1:{api_port}/ " in output
        assert httpx.get(f"http://127.0.0.1:{api_port}/").status_code == 200  # the console, anonymous
        assert (tmp_path / "home" / "rb.db").exists(), "embedded SQLite under RB_HOME"
        assert (tmp_path / "home" / "nats").is_dir(), "rb up started its own nats-server"
        # The front door first: the API and NATS at niceness 0, the work services at 10.
        assert children_niceness(process.pid) == {
            "nats-server": 0,
            "api": 0,
            "recorder": 10,
            "executor": 10,
            "scheduler": 10,
            "notifier": 10,
        }
        assert "priorities (niceness): api 0 (RB_NICE), nats-server 0, recorder, executor" in output
        key_file = tmp_path / "home" / "admin.key"
        assert key_file.stat().st_mode & 0o777 == 0o600
        admin_key = key_file.read_text().strip()
        assert output.count(admin_key) == 1, "the admin key is printed once"
        admin = {"Authorization": f"Bearer {admin_key}"}
        base = f"http://127.0.0.1:{api_port}/api/v1"
        assert httpx.get(f"{base}/runbooks").status_code == 401
        versions = httpx.get(f"{base}/runbooks/rb-000-hello/versions", headers=admin).json()
        assert versions["items"][0]["created_by"] == "key:system", versions
        keys = httpx.get(f"{base}/keys", headers=admin).json()["items"]
        assert [k["active"] for k in keys if k["name"] == "system"] == [False], "revoked after use"

        trigger = subprocess.run(
            [sys.executable, "-m", "rb_cli", "trigger", "rb-000-hello", "-p", "greeting=hey"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert trigger.returncode == 0, trigger.stdout + trigger.stderr
        execution_id = trigger.stdout.split("execution id:")[1].split()[0]
        status = None
        deadline = time.monotonic() + 60
        while status not in {"SUCCEEDED", "FAILED", "ABORTED"} and time.monotonic() < deadline:
            response = httpx.get(f"{base}/executions/{execution_id}", headers=admin)
            status = response.json().get("status") if response.status_code == 200 else None
            time.sleep(0.3)
        assert status == "SUCCEEDED", response.text
        detail = response.json()
        report = next(s for s in detail["steps"] if s["id"] == "report")
        assert report["outputs"]["message"] == "hey, rb"

        listing = subprocess.run(
            [sys.executable, "-m", "rb_cli", "executions"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert execution_id in listing.stdout and "SUCCEEDED" in listing.stdout
    finally:
        stop_up(process)
    rest = "".join(seen) + "".join(iter(lambda: lines.get(timeout=5) if not lines.empty() else "", ""))
    assert "rb stopped" in rest


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _foreign_execution(nats_url: str) -> str:
    """Puts a finished-looking execution on another NATS's default namespace."""
    import asyncio
    import uuid
    from datetime import UTC, datetime

    from rb_common.bus import append_event, connect
    from rb_common.events import Event, EventType

    async def put() -> str:
        bus = await connect(nats_url, name="rb-tests-foreign")
        try:
            execution_id = uuid.uuid4().hex
            event = Event.sealed(
                prev_hash=None,
                id=uuid.uuid4().hex,
                execution_id=execution_id,
                seq=1,
                type=EventType.STEP_SCHEDULED,
                time=datetime.now(UTC),
                actor="someone-else",
                data={"step_id": "foreign"},
            )
            await append_event(bus, event, 0)
            return execution_id
        finally:
            await bus.close()

    return asyncio.run(put())


def test_rb_up_without_rb_nats_url_runs_its_own_nats_and_the_cli_follows_it(tmp_path: Path) -> None:
    """4222 taken by another NATS (the machine's, or one started here): `rb up` starts its own on
    a free port, shows none of the other's executions, and the CLI finds the stack by its file."""
    foreign: subprocess.Popen[bytes] | None = None
    foreign_id = None
    if not _answers(4222):
        from rb_cli.services import nats_server_binary

        binary = nats_server_binary()
        assert binary
        foreign = subprocess.Popen(
            [binary, "-a", "127.0.0.1", "-p", "4222", "-js", "-sd", str(tmp_path / "foreign")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 15
        while not _answers(4222):
            assert time.monotonic() < deadline and foreign.poll() is None, "foreign nats-server"
            time.sleep(0.05)
        foreign_id = _foreign_execution("nats://127.0.0.1:4222")
    api_port = free_port()
    home = tmp_path / "home"
    env = {
        **os.environ,
        "RB_HOME": str(home),
        "RB_API_ADDR": f"127.0.0.1:{api_port}",
        "RB_RUNBOOKS_DIR": str(REPO / "runbooks"),
        # A given admin key: seeded by the API, sent by the CLI.
        "RB_BOOTSTRAP_ADMIN_KEY": BOOTSTRAP_KEY,
        "RB_API_KEY": BOOTSTRAP_KEY,
    }
    for name in ("RB_DATABASE_URL", "RB_NATS_URL", "RB_NAMESPACE", "RB_API_URL"):
        env.pop(name, None)
    process, _, seen = start_up(env)
    try:
        output = "".join(seen)
        assert "NATS nats://127.0.0.1:" in output and "(its own, namespace rb)" in output, output
        assert "nats://127.0.0.1:4222 " not in output, "joined the NATS on 4222"
        stack = (home / "stack.json").read_text()
        assert f'"api_url": "http://127.0.0.1:{api_port}"' in stack

        cli = {k: v for k, v in env.items() if k != "RB_API_ADDR"}  # the CLI must find it by the file
        trigger = subprocess.run(
            [sys.executable, "-m", "rb_cli", "trigger", "rb-000-hello"],
            env=cli,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert trigger.returncode == 0, trigger.stdout + trigger.stderr
        execution_id = trigger.stdout.split("execution id:")[1].split()[0]
        deadline = time.monotonic() + 60
        listing = ""
        while "SUCCEEDED" not in listing and time.monotonic() < deadline:
            listing = subprocess.run(
                [sys.executable, "-m", "rb_cli", "executions"],
                env=cli,
                capture_output=True,
                text=True,
                timeout=60,
            ).stdout
            time.sleep(0.3)
        assert execution_id in listing and "SUCCEEDED" in listing, listing
        assert "1 of 1" in listing, f"only this stack's execution is listed:\n{listing}"
        if foreign_id is not None:
            assert foreign_id not in listing
        replay = subprocess.run(
            [sys.executable, "-m", "rb_cli", "replay", execution_id, "--source", "nats"],
            env=cli,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert "REPLAY VERIFIED" in replay.stdout, replay.stdout + replay.stderr

        def rb(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "rb_cli", *args],
                env={**cli, **extra},
                capture_output=True,
                text=True,
                timeout=60,
            )

        made = rb("keys", "create", "ci-bot", "--role", "viewer", "--team", "payments", "--expires-in", "1d")
        assert made.returncode == 0, made.stdout + made.stderr
        ci_key = made.stdout.strip()
        assert ci_key.startswith("rbk_") and "shown only now" in made.stderr
        listed = rb("keys", "list", "--json")
        [entry] = [k for k in json.loads(listed.stdout)["items"] if k["name"] == "ci-bot"]
        assert entry["teams"] == ["payments"] and entry["expires_at"] and ci_key not in listed.stdout
        assert rb("executions", RB_API_KEY=ci_key).returncode == 0
        not_admin = rb("keys", "list", RB_API_KEY=ci_key)
        assert not_admin.returncode == 2 and "403" in not_admin.stderr
        assert rb("keys", "revoke", entry["id"]).returncode == 0
        refused = rb("executions", RB_API_KEY=ci_key)
        assert refused.returncode == 2 and "401" in refused.stderr and "RB_API_KEY" in refused.stderr
    finally:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        if foreign is not None:
            foreign.terminate()
            foreign.wait(timeout=10)
    assert not (home / "stack.json").exists(), "the stack file goes with the stack"
    assert not (home / "admin.key").exists(), "a given key is not written to RB_HOME"
