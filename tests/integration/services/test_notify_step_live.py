"""`notify` steps through the running stack: the executor (coordinator + workers) and the
notifier as OS processes on NATS, a Slack Web API peer, aiosmtpd and a webhook receiver on
loopback. The notifier delivers each channel once, records it, reports the step's outcome; a
second notifier reading the same events sends nothing again; the egress policy applies."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from services_support import Services, publish_trigger, wait_terminal

from rb_common.bus import Bus, read_execution
from rb_common.events import EventType
from rb_common.settings import Settings
from rb_engine.coordinator import fold
from rb_engine.replay import Replayer
from rb_engine.runner import PluginExecutor
from rb_engine.steps.registry import default_registry

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "notifier"))
from notifier_peers import Mailbox, SlackApi, SmtpServer

pytestmark = pytest.mark.integration

SLACK_TOKEN = "xoxb-notify-step-5e6f"
Server = Any  # conftest.ScriptedServer


@pytest.fixture
def slack() -> Iterator[SlackApi]:
    api = SlackApi()
    yield api
    api.close()


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer(Mailbox())
    server.start()
    yield server
    server.stop()


def runbook(runbook_id: str, hook: str) -> str:
    return f"""
id: {runbook_id}
name: Tell
steps:
  - {{id: look, type: transform, inputs: {{disk: 97}}, outputs: {{disk: $.disk}}}}
  - id: tell
    type: notify
    depends_on: [look]
    inputs:
      message: "disk at ${{steps.look.outputs.disk}}% on web-1"
      slack: {{channel: "#ops"}}
      email: {{to: [oncall@example.com], subject: "disk on web-1"}}
      webhook: {{url: "{hook}"}}
    outputs: {{channels: "$.channels"}}
"""


def start(services: Services, slack: SlackApi, smtp: SmtpServer, consumer: str, **env: str) -> None:
    services.start(
        "notifier",
        RB_SLACK_TOKEN=SLACK_TOKEN,
        RB_SLACK_BASE_URL=slack.base_url,
        RB_SMTP_URL=smtp.url,
        RB_NOTIFIER_CONSUMER=consumer,
        RB_NOTIFIER_DELIVER="all",
        **env,
    )


async def test_a_notify_step_is_delivered_once_by_the_notifier_and_recorded(
    services: Services, bus: Bus, slack: SlackApi, smtp: SmtpServer, http_server: Server
) -> None:
    http_server.ok("/hook", {"ok": True})
    services.start("executor")
    start(services, slack, smtp, "notifier-a")
    execution_id = await publish_trigger(
        bus, runbook(f"tell-{uuid.uuid4().hex[:6]}", http_server.url_for("/hook"))
    )
    events = await wait_terminal(bus, execution_id, timeout=60)
    state = fold(events)
    assert state.status == "SUCCEEDED", (state.reason, services.logs())
    channels = state.steps["tell"].outputs["channels"]
    assert set(channels) == {
        "slack:#ops",
        "email:oncall@example.com",
        f"webhook:{http_server.url_for('/hook')}",
    }
    assert channels["slack:#ops"]["ts"]
    [message] = slack.messages
    assert message.text == "disk at 97% on web-1"  # in #ops (the peer keeps its channel id)
    [(envelope, mail)] = smtp.mailbox.messages
    assert envelope.rcpt_tos == ["oncall@example.com"] and mail["Subject"] == "disk on web-1"
    assert "disk at 97% on web-1" in mail.get_body(("plain",)).get_content()
    [hook] = http_server.requests_to("/hook")
    assert hook.json()["message"] == "disk at 97% on web-1" and hook.json()["step_id"] == "tell"
    assert hook.headers["idempotency-key"].startswith("notify:")
    scheduled = next(e for e in events if e.type == EventType.STEP_SCHEDULED and e.data["step_id"] == "tell")

    async def records() -> list[Any]:
        return [
            e
            for e, _ in await read_execution(bus, execution_id)
            if e.type == EventType.NOTIFICATION_SENT and e.data["event_id"] == scheduled.id
        ]

    found: list[Any] = []

    async def three() -> bool:
        found[:] = await records()
        return len(found) == 3

    await poll(three, "three notification.sent records")
    assert {e.data["on"] for e in found} == {"step"}

    # Another notifier reading the same events from the start: nothing is sent again.
    start(services, slack, smtp, "notifier-b")
    await asyncio.sleep(3)  # nothing to wait for: it must do nothing (a test of absence)
    assert len(slack.messages) == 1 and len(smtp.mailbox.messages) == 1
    assert len(http_server.requests_to("/hook")) == 1
    final = [e for e, _ in await read_execution(bus, execution_id)]
    assert [e.type for e in final].count(EventType.STEP_SUCCEEDED) == 2  # look, tell: once each
    report = await Replayer(PluginExecutor(default_registry()), Settings()).replay(final)
    assert report.verified, [str(d) for d in report.deviations]


async def test_a_refused_webhook_fails_the_step_at_once(
    services: Services, bus: Bus, slack: SlackApi, smtp: SmtpServer, http_server: Server
) -> None:
    http_server.ok("/hook", {"ok": True})
    services.start("executor")
    start(services, slack, smtp, "notifier-c", RB_EGRESS_ALLOW="")
    execution_id = await publish_trigger(
        bus, runbook(f"tell-{uuid.uuid4().hex[:6]}", http_server.url_for("/hook"))
    )
    state = fold(await wait_terminal(bus, execution_id, timeout=60))
    assert state.status == "FAILED"
    error = state.steps["tell"].error or ""
    assert error.startswith("notification to webhook:") and "egress refused" in error, error
    assert http_server.requests_to("/hook") == []


async def poll(check: Any, what: str, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def test_a_step_too_old_to_announce_fails_unsent(
    services: Services, bus: Bus, slack: SlackApi, smtp: SmtpServer, http_server: Server
) -> None:
    services.start("executor")
    start(services, slack, smtp, "notifier-d", RB_NOTIFY_MAX_EVENT_AGE="0.001")
    execution_id = await publish_trigger(
        bus, runbook(f"tell-{uuid.uuid4().hex[:6]}", http_server.url_for("/hook"))
    )
    state = fold(await wait_terminal(bus, execution_id, timeout=60))
    assert state.status == "FAILED"
    assert (state.steps["tell"].error or "").startswith("not sent: the step is ")
    assert slack.messages == [] and smtp.mailbox.messages == [] and http_server.requests_to("/hook") == []
