"""Pure parts of the notifier: rule matching, configuration, retry/backoff, the ledger."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from rb_common.model import NotifyRule
from rb_common.settings import Settings
from rb_notifier.config import ConfigError, NotifierConfig, SmtpConfig
from rb_notifier.delivery import (
    FAILED,
    RETRYING,
    SENDING,
    SENT,
    Attempt,
    Backoff,
    PermanentError,
    Receipt,
    TransientError,
    attempt_once,
    ledger_from,
    message_id,
)
from rb_notifier.rules import (
    EVENT_TRIGGERS,
    EmailDestination,
    SlackDestination,
    WebhookDestination,
    default_rules,
    destinations,
    trigger_of,
)
from rb_notifier.slack import api_base_url


def rule(**data: object) -> NotifyRule:
    return NotifyRule.model_validate(data)


def test_every_notifiable_event_type_maps_to_its_rule_name() -> None:
    assert EVENT_TRIGGERS == {
        "execution.started": "started",
        "execution.succeeded": "succeeded",
        "execution.failed": "failed",
        "execution.aborted": "aborted",
        "execution.cancelled": "cancelled",
        "approval.requested": "approval_requested",
    }
    for other in ("execution.requested", "step.failed", "kpi.evaluated", "notification.sent"):
        assert trigger_of(other) is None


def test_destinations_of_matching_rules_in_order_each_once() -> None:
    rules = [
        rule(on=["failed", "succeeded"], slack={"channel": "#ops"}),
        rule(on=["failed"], email={"to": ["oncall@example.com"], "cc": ["lead@example.com"]}),
        rule(on=["failed"], slack={"channel": "#ops"}, webhook={"url": "https://hooks.example.com/rb"}),
        rule(on=["approval_requested"], slack={"channel": "#approvals"}),
    ]
    found = destinations(rules, "failed")
    assert found == [
        SlackDestination("#ops"),
        EmailDestination(("oncall@example.com",), ("lead@example.com",)),
        WebhookDestination("https://hooks.example.com/rb"),
    ]
    assert [d.key for d in found] == [
        "slack:#ops",
        "email:oncall@example.com;cc=lead@example.com",
        "webhook:https://hooks.example.com/rb",
    ]
    assert destinations(rules, "succeeded") == [SlackDestination("#ops")]
    assert destinations(rules, "approval_requested") == [SlackDestination("#approvals")]
    assert destinations(rules, "cancelled") == []


def test_webhook_channel_key_never_shows_credentials_or_query() -> None:
    secret_url = "https://user:pa55word@hooks.example.com/rb?token=abcdef123456"
    key = WebhookDestination(secret_url).key
    assert key.startswith("webhook:https://hooks.example.com/rb#")
    assert "pa55word" not in key and "abcdef123456" not in key and "user" not in key
    other = WebhookDestination("https://hooks.example.com/rb?token=zzz").key
    assert other != key  # two secret-bearing URLs stay apart
    assert EmailDestination(("a@b.example",)).key == "email:a@b.example"


def test_default_rule_applies_only_with_a_channel() -> None:
    assert default_rules(None, ["failed"]) == []
    [default] = default_rules("#rb-alerts", ["failed", "aborted"])
    assert destinations([default], "failed") == [SlackDestination("#rb-alerts")]
    assert destinations([default], "succeeded") == []


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://mail.example.com", SmtpConfig("mail.example.com", 25)),
        (
            "smtp://bot%40example.com:p%40ss@mail.example.com:587?starttls=true",
            SmtpConfig("mail.example.com", 587, "bot@example.com", "p@ss", use_tls=False, start_tls=True),
        ),
        (
            "smtps://u:p@mail.example.com",
            SmtpConfig("mail.example.com", 465, "u", "p", use_tls=True, start_tls=False),
        ),
        (
            "smtp://127.0.0.1:2525?starttls=false&timeout=5",
            SmtpConfig("127.0.0.1", 2525, start_tls=False, timeout=5.0),
        ),
    ],
)
def test_smtp_url(url: str, expected: SmtpConfig) -> None:
    assert SmtpConfig.from_url(url) == expected


@pytest.mark.parametrize(
    "url", ["http://mail.example.com", "smtp://", "smtps://h?starttls=true", "smtp://h?starttls=maybe"]
)
def test_bad_smtp_url(url: str) -> None:
    with pytest.raises(ConfigError):
        SmtpConfig.from_url(url)


def test_smtp_password_stays_out_of_repr_and_description() -> None:
    smtp = SmtpConfig.from_url("smtp://u:topsecretpw@mail.example.com:587")
    assert "topsecretpw" not in repr(smtp) and "topsecretpw" not in smtp.describe()


def test_config_from_settings_and_env() -> None:
    settings = Settings(
        slack_token="xoxb-123456",
        slack_base_url="http://127.0.0.1:9/api/",
        smtp_url="smtp://u:mailpw@h:2525",
        notify_from="rb@example.com",
        notify_default_slack_channel="#rb",
        notify_default_on="failed, approval_requested",
        public_url="https://rb.example.com/",
        notifier_consumer="notifier-test",
        notifier_deliver="all",
        notify_retry_initial=0.1,
    )
    env = {"RB_SECRET_DB": "db-password-1", "RB_SECRET_EMPTY": ""}
    config = NotifierConfig.from_settings(settings, env)
    assert config.slack_token == "xoxb-123456" and config.smtp is not None and config.smtp.port == 2525
    assert config.notify_from == "rb@example.com"
    assert config.default_slack_channel == "#rb"
    assert config.default_on == ("failed", "approval_requested")
    assert config.public_url == "https://rb.example.com"
    assert config.consumer == "notifier-test" and config.deliver_all and config.retry_initial == 0.1
    assert set(config.secrets) == {"db-password-1", "xoxb-123456", "mailpw"}
    assert "xoxb-123456" not in repr(config)
    with pytest.raises(ConfigError):
        NotifierConfig.from_settings(Settings(notify_default_on="exploded"), {})


def test_slack_base_url_forms() -> None:
    assert api_base_url(None) == "https://slack.com/api/"
    assert api_base_url("http://127.0.0.1:8000") == "http://127.0.0.1:8000/api/"
    assert api_base_url("http://127.0.0.1:8000/") == "http://127.0.0.1:8000/api/"
    assert api_base_url("http://127.0.0.1:8000/api") == "http://127.0.0.1:8000/api/"


def test_backoff_is_exponential_and_bounded() -> None:
    backoff = Backoff(max_attempts=6, initial=1.0, maximum=5.0, jitter=0.0)
    assert [backoff.delay(n) for n in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    jittery = Backoff(initial=10.0, maximum=100.0, jitter=0.1)
    assert jittery.delay(1, rng=lambda: 0.0) == pytest.approx(9.0)
    assert jittery.delay(1, rng=lambda: 1.0) == pytest.approx(11.0)


def test_retry_after_is_a_floor_and_backoff_the_rest() -> None:
    backoff = Backoff(initial=1.0, maximum=300.0, jitter=0.1)
    assert backoff.after(1, 3.0, rng=lambda: 0.0) == pytest.approx(3.0)  # never earlier
    assert backoff.after(1, 3.0, rng=lambda: 1.0) == pytest.approx(3.3)  # a little later
    assert backoff.after(3, None, rng=lambda: 0.5) == pytest.approx(4.0)
    assert Backoff(initial=1.0, maximum=300.0, jitter=0.0).delay(60) == 300.0  # capped


async def _raise(exc: Exception) -> Receipt:
    raise exc


def test_one_attempt_classified() -> None:
    async def ok() -> Receipt:
        return Receipt(ts="1.0")

    assert asyncio.run(attempt_once(ok)) == Attempt(receipt=Receipt(ts="1.0"))
    limited = asyncio.run(attempt_once(lambda: _raise(TransientError("429", retry_after=30.0))))
    assert not limited.ok and limited.transient and limited.retry_after == 30.0
    final = asyncio.run(attempt_once(lambda: _raise(PermanentError("channel_not_found"))))
    assert not final.transient and final.error == "channel_not_found"
    odd = asyncio.run(attempt_once(lambda: _raise(ConnectionError("refused"))))
    assert odd.transient and odd.error == "ConnectionError: refused"


def test_ledger_knows_sent_notifications_and_thread_roots() -> None:
    records: list[tuple[str, dict[str, Any]]] = [
        (FAILED, {"event_id": "e0", "channel": "slack:#ops", "attempts": 5, "ts": None}),
        (SENT, {"event_id": "e1", "channel": "slack:#ops", "ts": "100.1", "slack_channel": "C1"}),
        (SENT, {"event_id": "e2", "channel": "slack:#ops", "ts": "100.2", "thread_ts": "100.1"}),
        (SENT, {"event_id": "e2", "channel": "email:a@b.example", "ts": None}),
    ]
    ledger = ledger_from(records)
    assert set(ledger.sent) == {("e1", "slack:#ops"), ("e2", "slack:#ops"), ("e2", "email:a@b.example")}
    assert ("e0", "slack:#ops") not in ledger.sent  # a failure is not a delivery
    assert ledger.track("e0", "slack:#ops").final
    assert ledger.threads["slack:#ops"].ts == "100.1" and ledger.threads["slack:#ops"].slack_channel == "C1"
    assert "email:a@b.example" not in ledger.threads


def test_ledger_tracks_intents_retries_and_unanswered_attempts() -> None:
    at = "2026-01-01T10:00:00+00:00"
    intent = {
        "event_id": "e1",
        "channel": "slack:#ops",
        "attempts": 1,
        "at": at,
        "deadline": "2026-01-01T16:00:00+00:00",
    }
    retry = {**intent, "retry_at": "2026-01-01T10:00:30+00:00", "retry_after": 30.0, "error": "429"}
    second = {**intent, "attempts": 2, "at": "2026-01-01T10:00:31+00:00"}
    ledger = ledger_from([(SENDING, intent), (RETRYING, retry), (SENDING, second), (SENDING, intent)])
    track = ledger.track("e1", "slack:#ops")
    assert track.attempts == 2 and track.retry_at is not None and track.retry_at.second == 30
    assert track.first_at is not None and track.first_at.isoformat() == at
    assert track.deadline is not None and track.deadline.hour == 16
    assert track.unanswered is not None and track.unanswered.attempts == 2  # cut short
    done = ledger_from([(SENDING, intent), (SENT, {**intent, "ts": "1.2"}), (RETRYING, retry)])
    assert done.track("e1", "slack:#ops").final and done.track("e1", "slack:#ops").unanswered is None


def test_record_ids() -> None:
    assert message_id("e1", "slack:#ops") == "notify:e1:slack:#ops"
    assert message_id("e1", "slack:#ops", FAILED) == "notify:e1:slack:#ops:failed"
    assert message_id("e1", "slack:#ops", SENDING, 2) == "notify:e1:slack:#ops:sending:2"
    assert message_id("e1", "slack:#ops", RETRYING, 2) == "notify:e1:slack:#ops:retrying:2"
