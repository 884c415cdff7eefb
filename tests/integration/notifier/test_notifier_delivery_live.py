"""The notifier as its own process on real NATS, talking to a Slack Web API server, aiosmtpd and
a webhook receiver on loopback: content, threads, rate limits, records, no duplicates."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time

import pytest
from notifier_peers import (
    ALL_RECORDS,
    SMTP_PASSWORD,
    Notifiers,
    SlackApi,
    SmtpServer,
    new_execution_id,
    publish,
    recorded_outcomes,
    settled,
    wait_until,
)
from notifier_support import API_TOKEN, DB_PASSWORD, arun_execution, first

from rb_common.bus import Bus
from rb_common.events import EventType
from rb_common.links import verify

pytestmark = pytest.mark.integration

SLACK_TOKEN = "xoxb-test-9d8c7b6a"
PUBLIC_URL = "https://rb.example.com"
LINK_KEY = "link-key-for-tests-4b1d"

NOTIFY_ALL = """\
notify:
  - "on": [started, failed]
    slack: {channel: "#ops"}
  - "on": [failed]
    email: {to: [oncall@example.com], cc: [lead@example.com]}
  - "on": [failed]
    webhook: {url: "HOOK"}
"""


def notifier_env(execution_id: str, consumer: str, **extra: str) -> dict[str, str]:
    return {
        "RB_NOTIFIER_CONSUMER": consumer,
        "RB_NOTIFIER_FILTER_SUBJECT": f"rb.exec.{execution_id}",
        "RB_PUBLIC_URL": PUBLIC_URL,
        "RB_SECRET_DB_PASSWORD": DB_PASSWORD,
        "RB_NOTIFY_FROM": "rb@example.com",
        "RB_LINK_KEY": LINK_KEY,
        **extra,
    }


@pytest.mark.parametrize("slack_api", [{"rate_limit_first": True}], indirect=True)
async def test_a_failed_execution_reaches_slack_email_and_webhook_once(
    bus: Bus,
    consumers: list[str],
    notifiers: Notifiers,
    slack_api: SlackApi,
    smtp_server: SmtpServer,
    http_server,  # tests/integration/conftest.py: the webhook receiver
) -> None:
    execution_id = new_execution_id()
    http_server.respond("/hooks/rb", 200, json={"ok": True})
    hook = http_server.url_for("/hooks/rb")
    events = await arun_execution(
        fail=True, notify=NOTIFY_ALL.replace("HOOK", hook), execution_id=execution_id
    )
    started_event = first(events, EventType.EXECUTION_STARTED)
    failed_event = first(events, EventType.EXECUTION_FAILED)
    smtp_server.start()
    consumer = f"notifier-test-{execution_id}"
    consumers.append(consumer)
    await publish(bus, events)
    env = notifier_env(
        execution_id,
        consumer,
        RB_SLACK_TOKEN=SLACK_TOKEN,
        RB_SLACK_BASE_URL=slack_api.base_url,
        RB_SMTP_URL=smtp_server.url,
    )
    process = await notifiers.started(**env)

    async def records_stored(n: int) -> list:
        found: list = []

        async def check() -> bool:
            found[:] = await recorded_outcomes(bus, execution_id)
            return len(found) >= n

        for _ in range(400):
            if await check():
                return found
            await asyncio.sleep(0.1)
        raise AssertionError(f"{len(found)} outcomes on rb.result.{execution_id}:\n{notifiers.logs()}")

    records = await records_stored(4)
    assert len(slack_api.delivered) == 2, notifiers.logs()
    assert len(smtp_server.mailbox.messages) == 1
    assert len(http_server.requests_to("/hooks/rb")) == 1

    # Slack: the 429 was honoured (Retry-After: 1), then the start message, then the failure
    # as a reply in its thread.
    rate_limited, first_ok, second_ok = slack_api.calls
    assert rate_limited.status == 429 and first_ok.at - rate_limited.at >= 1.0
    assert first_ok.headers["authorization"] == f"Bearer {SLACK_TOKEN}"
    assert first_ok.body["channel"] == "#ops" and "thread_ts" not in first_ok.body
    assert "Nightly Enrichment started" in first_ok.body["text"]
    assert second_ok.body["thread_ts"] == first_ok.ts
    assert second_ok.body["channel"] == "C0OPS" and second_ok.body.get("reply_broadcast") is True
    blocks = json.dumps(second_ok.body["blocks"], ensure_ascii=False)
    for needle in (
        "Nightly Enrichment",
        "nightly-enrichment",
        "FAILED",
        "`enrich` (after 2 attempts)",
        "HTTP 503 from enrich.example.com",
        "success_rate = 0.5 (target ≥ 0.95)",
        "alert HighErrorRate (alertmanager)",
        f"{PUBLIC_URL}/api/v1/executions/{execution_id}/page?expires=",
    ):
        assert needle in blocks, needle

    # Email: authenticated from the URL, to + cc, a text and an HTML part with the same facts.
    envelope, mail = smtp_server.mailbox.messages[0]
    assert smtp_server.mailbox.logins == ["rb-bot"]
    assert envelope.mail_from == "rb@example.com"
    assert sorted(envelope.rcpt_tos) == ["lead@example.com", "oncall@example.com"]
    assert mail["Subject"] == "[rb] FAILED: Nightly Enrichment (step enrich)"
    assert mail["To"] == "oncall@example.com" and mail["Cc"] == "lead@example.com"
    text_part = mail.get_body(preferencelist=("plain",))
    html_part = mail.get_body(preferencelist=("html",))
    assert text_part is not None and html_part is not None
    text, html = text_part.get_content(), html_part.get_content()
    for needle in (
        "Nightly Enrichment",
        "FAILED",
        "enrich",
        "HTTP 503 from enrich.example.com",
        "success_rate",
    ):
        assert needle in text and needle in html
    # The link opens the execution's page through a signed, expiring URL (no API key needed).
    link = re.search(
        rf"{re.escape(PUBLIC_URL)}/api/v1/executions/{execution_id}/page\?expires=(\d+)&sig=(\w+)", text
    )
    assert link is not None
    assert verify(execution_id, int(link[1]), link[2], [LINK_KEY.encode()]) is None

    # Webhook: JSON with an idempotency key.
    [hook_request] = http_server.requests_to("/hooks/rb")
    assert hook_request.json()["event"] == "failed"
    assert hook_request.json()["failed_step"]["id"] == "enrich"
    assert hook_request.headers["idempotency-key"] == f"notify:{failed_event.id}:webhook:{hook}"

    # No secret anywhere: not in Slack, not in the mail, not in the webhook, not in the records.
    everything = (
        json.dumps([c.body for c in slack_api.calls])
        + mail.as_string()
        + hook_request.text
        + json.dumps([r.data for r in records])
    )
    for secret in (DB_PASSWORD, API_TOKEN, SLACK_TOKEN, SMTP_PASSWORD):
        assert secret not in everything
    assert "${secrets" not in everything

    # The records: one notification.sent per event and channel, with Slack's ts.
    by_key = {(r.data["event_id"], r.data["channel"]): r for r in records}
    assert set(by_key) == {
        (started_event.id, "slack:#ops"),
        (failed_event.id, "slack:#ops"),
        (failed_event.id, "email:oncall@example.com;cc=lead@example.com"),
        (failed_event.id, f"webhook:{hook}"),
    }
    assert all(r.type == "notification.sent" for r in records) and len(records) == 4
    for (event_id, channel), r in by_key.items():
        assert r.msg_id == f"notify:{event_id}:{channel}"
        assert r.data["error"] is None
        # The start message met the 429 first: two attempts; everything else went at once.
        assert r.data["attempts"] == (2 if event_id == started_event.id else 1)
    # The 429's Retry-After is on record, and each attempt's outcome.
    every = await recorded_outcomes(bus, execution_id, kinds=ALL_RECORDS)
    [retry] = [r for r in every if r.type == "notification.retrying"]
    assert retry.data["retry_after"] == 1.0 and "ratelimited" in retry.data["error"]
    assert by_key[(started_event.id, "slack:#ops")].data["ts"] == first_ok.ts
    assert by_key[(failed_event.id, "slack:#ops")].data["ts"] == second_ok.ts

    assert notifiers.stop(process) == 0  # SIGTERM: a clean exit

    # Every event delivered again (a new durable consumer from the start of the execution):
    # the record says each notification was sent, so nothing is sent twice.
    replay = f"notifier-replay-{execution_id}"
    consumers.append(replay)
    again = await notifiers.started(**{**env, "RB_NOTIFIER_CONSUMER": replay})
    await wait_until(lambda: notifiers.log_of(again).count("was sent already") == 4, 30, "4 skipped sends")
    await settled(bus, replay)
    assert len(slack_api.calls) == 3 and len(slack_api.delivered) == 2
    assert len(smtp_server.mailbox.messages) == 1
    assert len(http_server.requests_to("/hooks/rb")) == 1
    assert len(await recorded_outcomes(bus, execution_id)) == 4


async def test_mail_arrives_once_after_the_smtp_server_was_down(
    bus: Bus, consumers: list[str], notifiers: Notifiers, smtp_server: SmtpServer
) -> None:
    """SMTP is down for several retry intervals (three failed attempts on record), then answers
    451 once, then takes the mail: delivered once, every attempt on record."""
    execution_id = new_execution_id()
    notify = 'notify:\n  - "on": [failed]\n    email: {to: [oncall@example.com]}\n'
    events = await arun_execution(fail=True, notify=notify, execution_id=execution_id)
    consumer = f"notifier-test-{execution_id}"
    consumers.append(consumer)
    smtp_server.mailbox.busy = 1  # once it is up, it first answers 451
    await publish(bus, events)
    process = await notifiers.started(
        **notifier_env(
            execution_id,
            consumer,
            RB_SMTP_URL=smtp_server.url,  # nothing listens there yet
            RB_NOTIFY_RETRY_INITIAL="0.3",
            RB_NOTIFY_RETRY_MAX="1",
        )
    )

    async def retries() -> int:
        every = await recorded_outcomes(bus, execution_id, kinds=ALL_RECORDS)
        return sum(1 for r in every if r.type == "notification.retrying")

    deadline = time.monotonic() + 30
    while await retries() < 3:
        assert time.monotonic() < deadline, notifiers.logs()
        await asyncio.sleep(0.1)
    assert smtp_server.mailbox.messages == []
    smtp_server.start()
    await wait_until(lambda: len(smtp_server.mailbox.messages) == 1, 30, "the mail")
    for _ in range(100):
        records = await recorded_outcomes(bus, execution_id)
        if records:
            break
        await asyncio.sleep(0.1)
    [record] = records
    assert record.type == "notification.sent" and record.data["channel"] == "email:oncall@example.com"
    assert record.data["attempts"] >= 5  # three refused (at least), 451, accepted
    assert smtp_server.mailbox.attempts == 2
    assert "SMTP server answered 451" in notifiers.log_of(process)
    await settled(bus, consumer)
    assert len(smtp_server.mailbox.messages) == 1
    _, mail = smtp_server.mailbox.messages[0]
    assert DB_PASSWORD not in mail.as_string() and SMTP_PASSWORD not in notifiers.log_of(process)
    every = await recorded_outcomes(bus, execution_id, kinds=ALL_RECORDS)
    intents = [r for r in every if r.type == "notification.sending"]
    retried = [r for r in every if r.type == "notification.retrying"]
    assert len(intents) == record.data["attempts"] == len(retried) + 1
    assert all("unreachable" in r.data["error"] or "451" in r.data["error"] for r in retried)


async def test_a_slack_outage_does_not_delay_email(
    bus: Bus, consumers: list[str], notifiers: Notifiers, slack_api: SlackApi, smtp_server: SmtpServer
) -> None:
    """Slack answers 503 to everything: the mail of the same event goes out within a second of
    the event, and Slack's message once Slack is back."""
    execution_id = new_execution_id()
    notify = (
        'notify:\n  - "on": [failed]\n    slack: {channel: "#ops"}\n'
        '  - "on": [failed]\n    email: {to: [oncall@example.com]}\n'
    )
    events = await arun_execution(fail=True, notify=notify, execution_id=execution_id)
    consumer = f"notifier-test-{execution_id}"
    consumers.append(consumer)
    smtp_server.start()
    slack_api.down.set()
    process = await notifiers.started(
        **notifier_env(
            execution_id,
            consumer,
            RB_SLACK_TOKEN=SLACK_TOKEN,
            RB_SLACK_BASE_URL=slack_api.base_url,
            RB_SMTP_URL=smtp_server.url,
            RB_NOTIFY_RETRY_INITIAL="0.5",
            RB_NOTIFY_RETRY_MAX="1",
        )
    )
    published = time.monotonic()
    await publish(bus, events)
    await wait_until(lambda: len(smtp_server.mailbox.messages) == 1, 10, "the mail")
    mailed = time.monotonic()
    assert mailed - published < 1.0, f"email took {mailed - published:.2f}s"
    assert slack_api.posted() == [] and len(slack_api.posts) >= 1  # Slack is still down
    await wait_until(lambda: len(slack_api.posts) >= 3, 20, "Slack retried while down")
    slack_api.down.clear()
    await wait_until(lambda: len(slack_api.posted()) == 1, 20, "the Slack message once Slack is back")
    await settled(bus, consumer)
    assert len(slack_api.posted()) == 1 and len(smtp_server.mailbox.messages) == 1
    records = {r.data["channel"]: r for r in await recorded_outcomes(bus, execution_id)}
    assert records["email:oncall@example.com"].data["attempts"] == 1
    assert records["slack:#ops"].data["attempts"] >= 3
    assert notifiers.stop(process) == 0


async def test_slack_rate_limit_is_honoured_across_a_restart(
    bus: Bus, consumers: list[str], notifiers: Notifiers, slack_api: SlackApi
) -> None:
    """Slack answers 429 with Retry-After: 2 for 6 s (three times its value). The notifier is
    killed right after the first 429 and started again at once: no attempt comes earlier than
    Retry-After after the one before (the wait is in the record, not only in memory), and the
    message is delivered once."""
    retry_after = 2
    execution_id = new_execution_id()
    notify = 'notify:\n  - "on": [failed]\n    slack: {channel: "#ops"}\n'
    events = await arun_execution(fail=True, notify=notify, execution_id=execution_id)
    consumer = f"notifier-test-{execution_id}"
    consumers.append(consumer)
    env = notifier_env(
        execution_id, consumer, RB_SLACK_TOKEN=SLACK_TOKEN, RB_SLACK_BASE_URL=slack_api.base_url
    )
    slack_api.retry_after = retry_after
    slack_api.rate_limited_for = 3 * retry_after  # from the first post, however late it comes
    await publish(bus, events)
    victim = await notifiers.started(**env)

    async def retrying() -> list:
        every = await recorded_outcomes(bus, execution_id, kinds=ALL_RECORDS)
        return [r for r in every if r.type == "notification.retrying"]

    deadline = time.monotonic() + 20
    while not await retrying():
        assert time.monotonic() < deadline, notifiers.logs()
        await asyncio.sleep(0.05)
    notifiers.kill(victim)
    survivor = await notifiers.started(**env)
    await wait_until(lambda: len(slack_api.posted()) == 1, 30, "the message after the rate limit")
    await settled(bus, consumer)
    posts = slack_api.posts
    assert [p.status for p in posts[:-1]] == [429] * (len(posts) - 1) and posts[-1].status == 200
    assert len(posts) >= 3, notifiers.logs()  # 429 for three times Retry-After
    gaps = [b.at - a.at for a, b in itertools.pairwise(posts)]
    assert all(gap >= retry_after for gap in gaps), gaps  # the first retry no earlier than it
    [record] = await recorded_outcomes(bus, execution_id)
    assert record.type == "notification.sent" and record.data["attempts"] == len(posts)
    assert all(r.data["retry_after"] == retry_after for r in await retrying())
    assert len(slack_api.posted()) == 1
    assert notifiers.stop(survivor) == 0
