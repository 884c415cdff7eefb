"""Approval steps against the running stack (API, recorder, executor as OS processes, real NATS
and PostgreSQL): a second identity's approval continues the run, the requester's is refused,
the CLI lists and approves, the stream replays VERIFIED; a timed-out approval follows its
timeout_action, also when the executor that started its timer was killed in between."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
import uuid
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import pytest
from services_support import Services, api, approve, publish_trigger, wait_for_event, wait_terminal

from rb_api.slack_actions import signature
from rb_common.approval_links import signed_url
from rb_common.bus import Bus
from rb_common.events import EventType
from rb_common.settings import Settings
from rb_engine.coordinator import fold
from rb_engine.replay import Replayer
from rb_engine.runner import PluginExecutor
from rb_engine.steps.registry import default_registry

pytestmark = pytest.mark.integration


def gated(runbook_id: str, gate: str = "") -> str:
    return (
        f"id: {runbook_id}\nname: Gated\nversion: 1.0.0\nsteps:\n"
        "  - {id: prepare, type: transform, inputs: {a: 1}}\n"
        "  - id: gate\n"
        "    type: approval\n"
        "    depends_on: [prepare]\n"
        f"    inputs: {{approvers: ['role:approver'], prompt: 'Go on?', require_comment: true{gate}}}\n"
        "  - {id: after, type: transform, depends_on: [gate], inputs: {b: 2}}\n"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def key(base: str, name: str, *roles: str) -> dict[str, str]:
    made = api.post(f"{base}/keys", json={"name": name, "roles": list(roles)})
    assert made.status_code == 201, made.text
    return {"Authorization": f"Bearer {made.json()['key']}"}


async def wait_pending(
    base: str, approval_id: str, services: Services, timeout: float = 30
) -> dict[str, Any]:
    """The approval as the API shows it, once the recorder has projected it as pending."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = api.get(f"{base}/approvals/{approval_id}")
        if response.status_code == 200 and response.json()["status"] == "pending":
            return dict(response.json())
        await asyncio.sleep(0.1)
    raise AssertionError(f"{approval_id} never pending:\n" + services.logs())


def rb(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rb_cli", *args], env=env, capture_output=True, text=True, timeout=60
    )


async def start_stack(services: Services, postgres_database: str) -> tuple[str, int]:
    """API, recorder and executor as processes; (the API's base URL, its port)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}/api/v1"
    services.env["RB_DATABASE_URL"] = postgres_database
    services.env["RB_API_ADDR"] = f"127.0.0.1:{port}"
    for name in ("recorder", "executor", "api"):
        services.start(name)
    deadline = time.monotonic() + 60
    while True:
        try:
            if api.get(f"http://127.0.0.1:{port}/health/ready", timeout=2).status_code == 200:
                return base, port
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "API not ready:\n" + services.logs()
        await asyncio.sleep(0.2)


async def test_a_second_identity_approves_the_requester_may_not(
    services: Services, postgres_database: str, bus: Bus
) -> None:
    base, port = await start_stack(services, postgres_database)
    runbook_id = f"gate-{uuid.uuid4().hex[:8]}"
    created = api.post(
        f"{base}/runbooks", content=gated(runbook_id), headers={"Content-Type": "application/yaml"}
    )
    assert created.status_code == 201, created.text
    assert approve(base, runbook_id).status_code == 200
    requester = key(base, "requester", "operator", "approver")
    bob = {"name": "bob", "headers": key(base, "bob", "approver")}

    started = api.post(f"{base}/runbooks/{runbook_id}/execute", json={}, headers=requester)
    assert started.status_code == 202, started.text
    execution_id = started.json()["execution_id"]
    await wait_for_event(bus, execution_id, lambda e: e.type == EventType.APPROVAL_REQUESTED)
    approval_id = f"{execution_id}:gate"
    pending = await wait_pending(base, approval_id, services)
    assert pending["requested_by"] == "key:requester" and pending["prompt"] == "Go on?"
    shown = api.get(f"{base}/executions/{execution_id}").json()
    assert shown["status"] == "WAITING_APPROVAL", shown

    refused = api.post(f"{base}/approvals/{approval_id}/approve", json={"comment": "me"}, headers=requester)
    assert refused.status_code == 403, refused.text

    env = {**services.env, "RB_API_URL": f"http://127.0.0.1:{port}"}
    env["RB_API_KEY"] = bob["headers"]["Authorization"].removeprefix("Bearer ")
    listed = rb("approvals", env=env)
    assert listed.returncode == 0 and approval_id in listed.stdout, listed.stdout + listed.stderr
    silent = rb("approve", approval_id, env=env)
    assert silent.returncode == 2 and "requires a comment" in silent.stderr, silent.stderr
    done = rb("approve", approval_id, "-m", "checked", env=env)
    assert done.returncode == 0 and "approved" in done.stdout, done.stdout + done.stderr

    events = await wait_terminal(bus, execution_id, timeout=30)
    state = fold(events)
    assert state.status == "SUCCEEDED", services.logs()
    assert state.steps["gate"].outputs["approved_by"] == ["key:bob"]
    [decided] = [e for e in events if e.type == EventType.APPROVAL_DECIDED]
    assert (
        decided.actor == "key:bob" and decided.data["comment"] == "checked" and decided.data["via"] == "api"
    )
    report = await Replayer(PluginExecutor(default_registry()), Settings()).replay(events)
    assert report.verified, [str(d) for d in report.deviations]
    deadline = time.monotonic() + 30
    while api.get(f"{base}/approvals/{approval_id}").json()["status"] != "approved":
        assert time.monotonic() < deadline, services.logs()
        await asyncio.sleep(0.1)
    again = api.post(
        f"{base}/approvals/{approval_id}/approve", json={"comment": "again"}, headers=bob["headers"]
    )
    assert again.status_code == 409


async def test_a_timed_out_approval_follows_its_action_across_an_executor_restart(
    services: Services, bus: Bus
) -> None:
    first = services.start("executor")
    text = gated(f"gate-timeout-{uuid.uuid4().hex[:6]}", ", timeout: 3s, timeout_action: approve")
    began = time.monotonic()
    execution_id = await publish_trigger(bus, text, trigger={"type": "api", "actor": "key:someone"})
    await wait_for_event(
        bus,
        execution_id,
        lambda e: e.type == EventType.TIMER_STARTED and e.data["timer_id"] == "approval:gate",
    )
    services.kill(first)  # kill -9 while the approval waits
    services.start("executor")
    events = await wait_terminal(bus, execution_id, timeout=40)
    state = fold(events)
    assert state.status == "SUCCEEDED", services.logs()
    assert state.steps["gate"].outputs["timed_out"] is True and state.steps["after"].status == "SUCCEEDED"
    assert [e.type for e in events].count(EventType.TIMER_FIRED) == 1
    assert time.monotonic() - began >= 3
    report = await Replayer(PluginExecutor(default_registry()), Settings()).replay(events)
    assert report.verified, [str(d) for d in report.deviations]


SIGNING_SECRET = "slack-signing-secret-for-tests-4b1d"
LINK_KEY = "approval-links-key-for-tests-77aa"


def slack_click(approval_id: str, user: str) -> tuple[bytes, dict[str, str]]:
    payload = {
        "type": "block_actions",
        "user": {"id": user},
        "actions": [{"action_id": "rb_approve", "value": approval_id}],
        "channel": {"id": "C0APPROVALS"},
        "container": {"message_ts": "1700000000.000100"},
    }
    body = urlencode({"payload": json.dumps(payload)}).encode()
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": signature(SIGNING_SECRET, timestamp, body),
    }
    return body, headers


async def test_a_slack_click_and_an_email_link_approve_together(
    services: Services, postgres_database: str, bus: Bus
) -> None:
    services.env["RB_SLACK_SIGNING_SECRET"] = SIGNING_SECRET
    services.env["RB_LINK_KEY"] = LINK_KEY
    base, port = await start_stack(services, postgres_database)
    runbook_id = f"gate-two-{uuid.uuid4().hex[:6]}"
    text = gated(runbook_id).replace(
        "approvers: ['role:approver'], prompt: 'Go on?', require_comment: true",
        "approvers: ['role:approver', 'alice@example.com'], min_approvals: 2, prompt: 'Go on?'",
    )
    created = api.post(f"{base}/runbooks", content=text, headers={"Content-Type": "application/yaml"})
    assert created.status_code == 201, created.text
    assert approve(base, runbook_id).status_code == 200
    made = api.post(f"{base}/keys", json={"name": "bob", "roles": ["approver"], "slack_user_id": "U0BOB"})
    assert made.status_code == 201, made.text
    started = api.post(f"{base}/runbooks/{runbook_id}/execute", json={})
    execution_id = started.json()["execution_id"]
    approval_id = f"{execution_id}:gate"
    await wait_pending(base, approval_id, services)

    body, headers = slack_click(approval_id, "U0BOB")
    unsigned = api.post(
        f"{base}/slack/interactivity", content=body, headers={"Content-Type": headers["Content-Type"]}
    )
    assert unsigned.status_code == 401
    clicked = api.post(f"{base}/slack/interactivity", content=body, headers=headers)
    assert clicked.status_code == 200 and clicked.json()["text"] == "approved as key:bob", clicked.text
    replayed = api.post(f"{base}/slack/interactivity", content=body, headers=headers)
    assert replayed.status_code == 401

    url = urlsplit(
        signed_url(f"http://127.0.0.1:{port}", approval_id, "alice@example.com", [LINK_KEY.encode()], 600)
    )
    link = f"http://127.0.0.1:{port}{url.path}?{url.query}"
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    page = httpx.get(link, timeout=10)
    assert page.status_code == 200 and "Approve" in page.text
    decided = httpx.post(link, content=b"decision=approve&comment=ok", headers=form, timeout=10)
    assert decided.status_code == 200, decided.text

    events = await wait_terminal(bus, execution_id, timeout=30)
    state = fold(events)
    assert state.status == "SUCCEEDED", services.logs()
    vias = sorted((e.data["via"], e.actor) for e in events if e.type == EventType.APPROVAL_DECIDED)
    assert vias == [("email", "email:alice@example.com"), ("slack", "key:bob")]
    deadline = time.monotonic() + 30
    while api.get(f"{base}/approvals/{approval_id}").json()["status"] != "approved":
        assert time.monotonic() < deadline, services.logs()
        await asyncio.sleep(0.1)
    used = httpx.post(link, content=b"decision=approve", headers=form, timeout=10)
    assert used.status_code == 409, "the link worked once"
