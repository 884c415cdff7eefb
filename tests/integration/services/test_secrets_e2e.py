"""A secret from the encrypted store, used in a URL, a header, a shell env var, a transform
(`upper`) and stdout, leaves no trace, literal or encoded, anywhere rb keeps or shows things:
events, the database file, the services' logs, API responses (REST and GraphQL), notifications
(a webhook peer), replay output and exported fixtures. Real processes: recorder, executor,
notifier and API on the session's NATS, SQLite under RB_HOME, `rb secrets` and `rb replay` /
`rb fixture export` as CLI subprocesses."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, quote_plus, urlsplit

import pytest
from services_support import Services, api, approve, wait_for_event, wait_terminal

from rb_common.bus import Bus
from rb_common.events import EventType
from rb_common.secrets import generate_key

pytestmark = pytest.mark.integration

TOKEN = "e2eTok3n/ab+cd=ef-" + uuid.uuid4().hex[:8]


def forms(value: str) -> dict[str, str]:
    raw = value.encode()
    return {
        "literal": value,
        "upper": value.upper(),
        "lower": value.lower(),
        "reversed": value[::-1],
        "base64": base64.b64encode(raw).decode(),
        "base64 unpadded": base64.b64encode(raw).decode().rstrip("="),
        "base64 urlsafe": base64.urlsafe_b64encode(raw).decode().rstrip("="),
        "url": quote(value, safe=""),
        "url (path)": quote(value),
        "url (form)": quote_plus(value),
        "hex": raw.hex(),
        "HEX": raw.hex().upper(),
    }


def assert_no_trace(where: str, text: str) -> None:
    for name, form in forms(TOKEN).items():
        assert form not in text, f"the secret ({name}) is in {where}"


class Peer:
    """The outside world on loopback: an API that echoes the token back in every encoding (as
    careless services do), and a webhook receiver for the notifier."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.notifications: list[str] = []
        peer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                query = parse_qs(urlsplit(self.path).query)
                token = (query.get("token") or [""])[0]
                peer.requests.append({"path": self.path, "authorization": self.headers.get("Authorization")})
                body = json.dumps(
                    {"seen": token, "forms": forms(token), "auth": self.headers.get("Authorization")}
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("X-Echo", token)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                peer.notifications.append(self.rfile.read(length).decode("utf-8", "replace"))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def peer() -> Any:
    p = Peer()
    yield p
    p.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


SCRIPT = (
    'echo "$TOKEN"; printf %s "$TOKEN" | rev; echo; printf %s "$TOKEN" | base64; '
    'printf %s "$TOKEN" | od -An -tx1 | tr -d \' \\n\'; echo; printf %s "$TOKEN" | tr a-z A-Z; echo'
)


def runbook(runbook_id: str, port: int) -> str:
    return f"""
id: {runbook_id}
name: Secrets stay secret
version: 1.0.0
legal_basis: tests
notify:
  - on: [succeeded, failed]
    webhook: {{url: "http://127.0.0.1:{port}/hook"}}
steps:
  - id: call
    type: http
    inputs:
      url: "http://127.0.0.1:{port}/echo?token=${{secrets.API_TOKEN}}"
      headers: {{Authorization: "Bearer ${{secrets.API_TOKEN}}"}}
    outputs: {{body: $}}
  - id: shout
    type: transform
    inputs:
      loud: "${{upper(secrets.API_TOKEN)}}"
      quiet: "x-${{lower(secrets.API_TOKEN)}}-y"
      backwards: "${{secrets.API_TOKEN[::-1]}}"
    outputs: {{loud: $.loud}}
  - id: sh
    type: shell
    inputs:
      command: [sh, -c, {json.dumps(SCRIPT)}]
      env: {{TOKEN: "${{secrets.API_TOKEN}}"}}
    outputs: {{out: $.stdout}}
  - id: complain
    type: shell
    on_failure: continue
    retry: {{max_attempts: 1}}
    inputs:
      command: [sh, -c, 'echo "bad token $TOKEN" >&2; exit 3']
      env: {{TOKEN: "${{secrets.API_TOKEN}}"}}
  - id: after
    type: transform
    depends_on: [call, shout, sh, complain]
    inputs: {{echoed: "${{steps.call.outputs.body}}", loud: "${{steps.shout.outputs.loud}}"}}
"""


def cli(services: Services, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rb_cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=services.env,
        cwd=services.home,
        timeout=120,
    )


async def test_a_secret_leaves_no_trace(services: Services, bus: Bus, peer: Peer, tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}/api/v1"
    services.env.update(
        {
            "RB_MASTER_KEY": generate_key(),
            "RB_API_ADDR": f"127.0.0.1:{port}",
            "RB_API_URL": f"http://127.0.0.1:{port}",
            "RB_EGRESS_ALLOW": "127.0.0.1/32",
            "RB_NOTIFIER_DELIVER": "all",
            "RB_LOG_LEVEL": "DEBUG",  # the most a log could ever say
            "RB_LOG_FORMAT": "json",  # the default; what a log collector reads
        }
    )
    stored = cli(services, "secrets", "set", "API_TOKEN", stdin=TOKEN + "\n")
    assert stored.returncode == 0, stored.stderr
    for name in ("recorder", "executor", "notifier", "api"):
        services.start(name)
    deadline = time.monotonic() + 60
    while True:
        try:
            if api.get(f"http://127.0.0.1:{port}/health/ready", timeout=2).status_code == 200:
                break
        except Exception:
            pass
        assert time.monotonic() < deadline, services.logs()
        await asyncio.sleep(0.2)

    runbook_id = f"secret-{uuid.uuid4().hex[:8]}"
    created = api.post(
        f"{base}/runbooks",
        content=runbook(runbook_id, peer.port),
        headers={"Content-Type": "application/yaml"},
    )
    assert created.status_code == 201, created.text
    assert approve(base, runbook_id).status_code == 200
    started = api.post(f"{base}/runbooks/{runbook_id}/execute", json={})
    assert started.status_code == 202, started.text
    execution_id = started.json()["execution_id"]

    events = await wait_terminal(bus, execution_id, timeout=90)
    await wait_for_event(
        bus,
        execution_id,
        lambda e: e.type in (EventType.NOTIFICATION_SENT, EventType.NOTIFICATION_FAILED),
        60,
    )
    # The secret was really used: the peer saw it in the URL and the header; the shell step ran.
    assert any(TOKEN in r["path"] for r in peer.requests), peer.requests
    assert any(r["authorization"] == f"Bearer {TOKEN}" for r in peer.requests)
    by_step = {e.data.get("step_id"): e.data for e in events if e.type == EventType.STEP_SUCCEEDED}
    assert by_step["sh"]["result"]["stdout"].count("***") >= 5, by_step["sh"]
    assert by_step["shout"]["result"]["loud"] == "***"
    failed = [e.data for e in events if e.type == EventType.STEP_FAILED and e.data["step_id"] == "complain"]
    assert failed and "bad token ***" in failed[0]["error"]
    scheduled = [e.data for e in events if e.type == EventType.STEP_SCHEDULED and e.data["step_id"] == "call"]
    assert "${secrets.API_TOKEN}" in scheduled[0]["inputs"]["url"]  # recorded as the expression

    # Recorded: wait for the projection, then read everything the API answers about the run.
    deadline = time.monotonic() + 60
    while api.get(f"{base}/executions/{execution_id}").json().get("status") not in ("SUCCEEDED", "FAILED"):
        assert time.monotonic() < deadline, services.logs()
        await asyncio.sleep(0.3)
    await asyncio.sleep(1.0)  # the notification outcome reaches the recorder too
    answers = [
        api.get(f"{base}/executions/{execution_id}"),
        api.get(f"{base}/executions/{execution_id}/events"),
        api.get(f"{base}/executions/{execution_id}/logs"),
        api.get(f"{base}/executions/{execution_id}/audit"),
        api.post(f"{base}/executions/{execution_id}/replay"),
        api.get(f"{base}/executions", params={"runbook_id": runbook_id}),
        api.get(f"{base}/runbooks/{runbook_id}"),
        api.get(f"{base}/secrets"),
        api.post(
            f"http://127.0.0.1:{port}/graphql",
            json={
                "query": "query($id: String!) { runbookExecution(id: $id) { status steps { id outputs error } } }",
                "variables": {"id": execution_id},
            },
        ),
        api.post(
            f"http://127.0.0.1:{port}/graphql",
            json={
                "query": "mutation($id: String!) { replayExecution(id: $id) { verified result } }",
                "variables": {"id": execution_id},
            },
        ),
    ]
    for answer in answers:
        assert answer.status_code in (200, 202), (answer.request.url, answer.text[:500])
        assert_no_trace(f"API {answer.request.method} {answer.request.url.path}", answer.text)
    replay = answers[4].json()
    assert replay["verified"], replay["deviations"]
    assert "API_TOKEN" in answers[7].text

    assert_no_trace("events", json.dumps([e.model_dump(mode="json") for e in events]))
    assert peer.notifications, "the notifier sent nothing"
    assert_no_trace("notifications", "\n".join(peer.notifications))

    replayed = cli(services, "replay", execution_id, "--json", "--source", "db")
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert_no_trace("rb replay --json", replayed.stdout + replayed.stderr)
    exported = cli(
        services, "fixture", "export", execution_id, "--source", "db", "--out", str(tmp_path / "fx")
    )
    assert exported.returncode == 0, exported.stdout + exported.stderr
    for path in (tmp_path / "fx").iterdir():
        assert_no_trace(f"exported {path.name}", path.read_text())

    # The database: every table, dumped, and the raw file (the store keeps a Fernet token).
    with sqlite3.connect(tmp_path / "rb.db") as conn:
        dump = "\n".join(conn.iterdump())
    assert "secrets" in dump and "API_TOKEN" in dump
    assert_no_trace("the database", dump)
    for path in tmp_path.glob("rb.db*"):
        data = path.read_bytes().decode("latin-1")
        assert_no_trace(f"database file {path.name}", data)

    services.stop_all()
    logs = {p.name: p.read_text(errors="replace") for p in tmp_path.glob("*.log")}
    assert any("HTTP" in text or "step" in text for text in logs.values())
    for name, text in logs.items():
        assert_no_trace(f"log {name}", text)
        # JSON lines: each one parses, and no decoded field (message, traceback, ids) holds it.
        records = [json.loads(line) for line in text.splitlines() if line.strip()]
        assert records, name
        for record in records:
            assert_no_trace(f"a JSON log line of {name}", "\n".join(str(v) for v in record.values()))
    executor_lines = [
        json.loads(line)
        for name, text in logs.items()
        if name.startswith("executor")
        for line in text.splitlines()
        if line.strip()
    ]
    assert any(r["execution_id"] == execution_id and r["step_id"] == "call" for r in executor_lines)
