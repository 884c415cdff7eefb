"""`rb loadtest run`: the CI smoke (k6, 5 VUs for 20 s) against `rb up` started as processes, and a
breached threshold failing the command."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from test_rb_up import free_port, start_up, stop_up

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]


def test_loadtest_smoke_against_rb_up(tmp_path: Path) -> None:
    api_port = free_port()
    env = {
        **os.environ,
        "RB_HOME": str(tmp_path / "home"),
        "RB_API_ADDR": f"127.0.0.1:{api_port}",
        "RB_RUNBOOKS_DIR": str(REPO / "runbooks"),
        "RB_API_URL": f"http://127.0.0.1:{api_port}",
        "NO_COLOR": "1",
    }
    # RB_NATS_URL unset: `rb up` runs its own nats-server on a free port.
    for name in ("RB_DATABASE_URL", "RB_NATS_URL", "RB_NAMESPACE", "RB_BOOTSTRAP_ADMIN_KEY", "RB_API_KEY"):
        env.pop(name, None)
    process, _, _ = start_up(env)
    try:
        summary_file = tmp_path / "summary.json"
        smoke = subprocess.run(
            [sys.executable, "-m", "rb_cli", "loadtest", "run", "rb-000-hello", "--vus", "5",
             "--duration", "20s", "--summary-json", str(summary_file)],
            env=env, capture_output=True, text=True, timeout=240,
        )  # fmt: skip
        output = smoke.stdout + smoke.stderr
        assert smoke.returncode == 0, output
        completed = re.search(r"rb: executions completed: (\d+) in [\d.]+ s \(([\d.]+) per minute\)", output)
        assert completed, output
        count = int(completed.group(1))
        assert count >= 5, output
        assert f"rb: executions SUCCEEDED: {count} of {count} triggered" in output
        assert re.search(r"rb: trigger-to-completion: med \d+ ms, p\(90\) \d+ ms, p\(95\) \d+ ms", output)
        assert "✓ 'p(95)<2000'" in output and "✓ 'rate<0.05'" in output
        metrics = json.loads(summary_file.read_text())["metrics"]
        assert metrics["rb_executions_completed"]["count"] == count

        # The API agrees: every execution the load test triggered is recorded as SUCCEEDED.
        key = (tmp_path / "home" / "admin.key").read_text().strip()
        listing = httpx.get(
            f"http://127.0.0.1:{api_port}/api/v1/executions",
            params={"runbook_id": "rb-000-hello", "limit": 500},
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        )
        assert listing.status_code == 200, listing.text
        statuses = [item["status"] for item in listing.json()["items"]]
        assert len(statuses) == count and set(statuses) == {"SUCCEEDED"}, statuses

        # Long polls (the default): one request follows an execution (two when the first comes
        # before the execution is known), where plain polls every 0.25 s take one per quarter second.
        polls = metrics["http_reqs"]["count"] - metrics["rb_executions_accepted"]["count"] - 1  # setup
        assert polls <= 2 * count + 5, (polls, count)  # + the iterations cut off at the end

        # --poll-wait 0: plain polls.
        plain_summary = tmp_path / "plain.json"
        plain_polls = subprocess.run(
            [sys.executable, "-m", "rb_cli", "loadtest", "run", "rb-000-hello", "--vus", "2",
             "--duration", "6s", "--poll-wait", "0", "--summary-json", str(plain_summary)],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert plain_polls.returncode == 0, plain_polls.stdout + plain_polls.stderr
        plain_metrics = json.loads(plain_summary.read_text())["metrics"]
        finished = plain_metrics["rb_executions_completed"]["count"]
        assert finished >= 2 and plain_metrics["rb_execution_succeeded"]["fails"] == 0, plain_metrics
        # rb-000-hello waits 1 s: at least 4 polls 0.25 s apart for each execution that finished.
        plain = plain_metrics["http_reqs"]["count"] - plain_metrics["rb_executions_accepted"]["count"] - 1
        assert plain >= 4 * finished, (plain, finished)

        breached = subprocess.run(
            [sys.executable, "-m", "rb_cli", "loadtest", "run", "rb-000-hello", "--vus", "1",
             "--duration", "2s", "--threshold", "rb_trigger_to_completion=p(95)<1"],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert breached.returncode == 1, breached.stdout + breached.stderr
        assert "a threshold was breached" in breached.stderr
    finally:
        stop_up(process)
