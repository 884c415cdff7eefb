"""`rb loadtest run --arrival-rate`: k6's constant-arrival-rate against an HTTP peer on loopback that
refuses every other execution with 429 (what the API answers when its queue is full): the
refusals are counted as refused, not failed, and the accepted executions are followed to the end."""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
KEY = "rbk_open-loop-test-key"


class HalfFull(BaseHTTPRequestHandler):
    """Accepts every other execute (202), refuses the rest (429, Retry-After: 1); every accepted
    execution reads as SUCCEEDED."""

    turns = itertools.count()
    lock = threading.Lock()

    def log_message(self, *_: object) -> None:
        pass

    def _answer(self, status: int, body: dict[str, object], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.headers.get("Authorization") != f"Bearer {KEY}":
            self._answer(401, {"detail": "no"})
        elif self.path.startswith("/api/v1/executions/"):
            self._answer(200, {"id": self.path.rsplit("/", 1)[1], "status": "SUCCEEDED"})
        else:
            self._answer(200, {"id": "rb-000-hello"})

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with self.lock:
            turn = next(self.turns)
        if turn % 2:
            self._answer(429, {"detail": "queue full"}, {"Retry-After": "1"})
        else:
            self._answer(202, {"execution_id": uuid.uuid4().hex, "status": "QUEUED"})


@pytest.fixture
def peer() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), HalfFull)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_refusals_are_counted_not_failed(peer: str, tmp_path: Path) -> None:
    env = {**os.environ, "RB_API_URL": peer, "RB_API_KEY": KEY, "RB_HOME": str(tmp_path), "NO_COLOR": "1"}
    summary_file = tmp_path / "summary.json"
    run = subprocess.run(
        [sys.executable, "-m", "rb_cli", "loadtest", "run", str(REPO / "runbooks" / "rb-000-hello"),
         "--arrival-rate", "10/s", "--duration", "4s", "--poll-interval", "0.1",
         "--summary-json", str(summary_file)],
        env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    output = run.stdout + run.stderr
    assert run.returncode == 0, output  # no threshold breached: a 429 is not a failed request
    metrics = json.loads(summary_file.read_text())["metrics"]
    accepted = metrics["rb_executions_accepted"]["count"]
    refused = metrics["rb_executions_refused"]["count"]
    assert accepted >= 10 and abs(accepted - refused) <= 1, (accepted, refused)
    assert metrics["http_req_failed"]["value"] == 0
    assert metrics["rb_executions_completed"]["count"] == accepted
    assert metrics["rb_execution_succeeded"]["passes"] == accepted
    found = re.search(r"rb: executions accepted: (\d+), refused \(429\): (\d+)", output)
    assert found and (int(found.group(1)), int(found.group(2))) == (accepted, refused), output
