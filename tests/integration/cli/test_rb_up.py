"""`rb up` from scratch: its own NATS, SQLite under RB_HOME, every service, an example run."""

from __future__ import annotations

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
    env.pop("RB_DATABASE_URL", None)
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
    try:
        deadline = time.monotonic() + 90
        while not any("press Ctrl-C" in line for line in seen):
            assert time.monotonic() < deadline, "rb up did not come up:\n" + "".join(seen)
            try:
                seen.append(lines.get(timeout=1))
            except queue.Empty:
                assert process.poll() is None, "rb up exited:\n" + "".join(seen)
        output = "".join(seen)
        assert f"API http://127.0.0.1:{api_port}/api/v1" in output
        assert "registered rb-000-hello" in output
        assert (tmp_path / "home" / "rb.db").exists(), "embedded SQLite under RB_HOME"
        assert (tmp_path / "home" / "nats").is_dir(), "rb up started its own nats-server"

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
            response = httpx.get(f"http://127.0.0.1:{api_port}/api/v1/executions/{execution_id}")
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
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            raise
    rest = "".join(seen) + "".join(iter(lambda: lines.get(timeout=5) if not lines.empty() else "", ""))
    assert "rb stopped" in rest
