"""Slack's Approve / Reject buttons: a click signed like Slack signs it decides as the identity
that carries the clicking user's slack_user_id, and the message's buttons give way to the
outcome (chat.update on a loopback Slack peer); unsigned, wrongly signed, stale and replayed
requests are refused (401); a repeated click changes nothing."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from api_app_support import app_client, app_settings
from api_auth_support import ADMIN
from api_probe_support import SubjectProbe
from approval_support import Waiting, approval_yaml
from sqlalchemy import Engine

from rb_api.deps import ApiOptions
from rb_api.slack_actions import signature
from rb_common.bus import DEFAULT_NAMES, Bus
from rb_engine.coordinator.applier import controlled

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
URL = "/api/v1/slack/interactivity"
FORM = {"content-type": "application/x-www-form-urlencoded"}


class SlackPeer:
    """Answers chat.update like Slack and keeps what it was asked."""

    def __init__(self) -> None:
        self.updates: list[dict[str, Any]] = []
        peer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                peer.updates.append({"path": self.path, "auth": self.headers.get("Authorization"), **body})
                data = json.dumps({"ok": True, "channel": body.get("channel"), "ts": body.get("ts")}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}"


@pytest.fixture
def slack_peer() -> Iterator[SlackPeer]:
    peer = SlackPeer()
    yield peer
    peer.httpd.shutdown()
    peer.httpd.server_close()


@pytest.fixture
async def slack_client(
    tmp_path: Path, engine: Engine, bus: Bus, api_options: ApiOptions, slack_peer: SlackPeer
) -> AsyncIterator[httpx.AsyncClient]:
    settings = app_settings(
        tmp_path, slack_signing_secret=SECRET, slack_token="xoxb-test-token", slack_base_url=slack_peer.url
    )
    async with app_client(settings, engine, bus, api_options) as c:
        yield c


def click(approval_id: str, user: str = "U0BOB", action: str = "rb_approve") -> bytes:
    payload = {
        "type": "block_actions",
        "user": {"id": user, "username": "bob"},
        "actions": [{"action_id": action, "value": approval_id, "type": "button"}],
        "channel": {"id": "C0APPROVALS"},
        "container": {"type": "message", "message_ts": "1700000000.000100"},
        "message": {
            "ts": "1700000000.000100",
            "blocks": [
                {"type": "section", "text": {"type": "mrkdwn", "text": "*Approval requested:* step gate"}},
                {"type": "actions", "block_id": "rb_approval", "elements": []},
            ],
        },
    }
    return urlencode({"payload": json.dumps(payload)}).encode()


def signed(body: bytes, at: float | None = None, secret: str = SECRET) -> dict[str, str]:
    timestamp = str(int(at if at is not None else time.time()))
    return {
        **FORM,
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": signature(secret, timestamp, body),
    }


@pytest.fixture
async def waiting(slack_client: httpx.AsyncClient, engine: Engine) -> Waiting:
    made = await slack_client.post(
        "/api/v1/keys", json={"name": "bob", "roles": ["approver"], "slack_user_id": "U0BOB"}, headers=ADMIN
    )
    assert made.status_code == 201 and made.json()["slack_user_id"] == "U0BOB", made.text
    return Waiting(
        engine, approval_yaml("t-slack-gate", "['role:approver']", require_comment=False), "key:carol"
    )


async def test_a_signed_click_approves_and_the_message_shows_the_outcome(
    slack_client: httpx.AsyncClient, waiting: Waiting, probe: SubjectProbe, slack_peer: SlackPeer
) -> None:
    body = click(waiting.approval_id)
    response = await slack_client.post(URL, content=body, headers=signed(body))
    assert response.status_code == 200, response.text
    assert response.json()["text"] == "approved as key:bob"
    [command], _ = await probe.commands(waiting.execution_id)
    assert command["actor"] == "key:bob" and command["data"]["via"] == "slack"
    assert command["data"]["decision"] == "approve" and command["data"]["approval_id"] == waiting.approval_id
    [update] = slack_peer.updates
    assert update["path"] == "/api/chat.update" and update["auth"] == "Bearer xoxb-test-token"
    assert update["channel"] == "C0APPROVALS" and update["ts"] == "1700000000.000100"
    assert all(b.get("block_id") != "rb_approval" for b in update["blocks"]), "the buttons are gone"
    assert "Approved by <@U0BOB> (key:bob)" in update["text"]

    # The executor takes the decision in; a later click (signed anew) changes nothing.
    waiting.record(controlled(waiting.state, command["type"], command["data"], command["actor"]))
    assert waiting.state.steps["gate"].status == "SUCCEEDED"
    again = click(waiting.approval_id, action="rb_reject")
    repeated = await slack_client.post(URL, content=again, headers=signed(again, time.time() + 1))
    assert repeated.status_code == 200 and "approved: nothing to decide" in repeated.json()["text"]
    assert waiting.state.steps["gate"].status == "SUCCEEDED" and len(slack_peer.updates) == 1


async def test_unsigned_wrongly_signed_stale_and_replayed_clicks_are_refused(
    slack_client: httpx.AsyncClient, waiting: Waiting, probe: SubjectProbe
) -> None:
    body = click(waiting.approval_id)
    unsigned = await slack_client.post(URL, content=body, headers=FORM)
    assert unsigned.status_code == 401 and unsigned.headers["content-type"].startswith(
        "application/problem+json"
    )
    forged = await slack_client.post(URL, content=body, headers=signed(body, secret="not-the-secret"))
    assert forged.status_code == 401 and "does not match" in forged.json()["detail"]
    stale = await slack_client.post(URL, content=body, headers=signed(body, time.time() - 301))
    assert stale.status_code == 401 and stale.json()["type"].endswith("stale-signature")
    headers = signed(body)
    first = await slack_client.post(URL, content=body, headers=headers)
    assert first.status_code == 200, first.text
    replayed = await slack_client.post(URL, content=body, headers=headers)
    assert replayed.status_code == 401 and "replay" in replayed.json()["detail"]
    sent = await probe.count(DEFAULT_NAMES.inbox_stream, DEFAULT_NAMES.control_subject(waiting.execution_id))
    assert sent == 1, "only the first signed click was sent on"


async def test_a_click_by_an_unlinked_slack_user_decides_nothing(
    slack_client: httpx.AsyncClient, waiting: Waiting, probe: SubjectProbe
) -> None:
    body = click(waiting.approval_id, user="U0NOBODY")
    response = await slack_client.post(URL, content=body, headers=signed(body))
    assert response.status_code == 200 and "not linked to an rb identity" in response.json()["text"]
    sent = await probe.count(DEFAULT_NAMES.inbox_stream, DEFAULT_NAMES.control_subject(waiting.execution_id))
    assert sent == 0
    malformed = b"payload=%7Bnot-json"
    bad = await slack_client.post(URL, content=malformed, headers=signed(malformed))
    assert bad.status_code == 400


async def test_the_buttons_stay_while_more_approvals_are_needed(
    slack_client: httpx.AsyncClient, waiting: Waiting, engine: Engine, slack_peer: SlackPeer
) -> None:
    text = approval_yaml("t-slack-two", "['role:approver']", require_comment=False)
    two = Waiting(engine, text.replace("prompt:", "min_approvals: 2, prompt:"), "key:carol")
    body = click(two.approval_id)
    response = await slack_client.post(URL, content=body, headers=signed(body))
    assert response.status_code == 200 and response.json()["text"] == "approved as key:bob", response.text
    [update] = slack_peer.updates
    assert any(b.get("block_id") == "rb_approval" for b in update["blocks"]), "one more approver may click"
    assert "Approved by <@U0BOB> (key:bob)" in update["text"]
