"""Notifier.handle with in-memory twins of JetStream and the channels: idempotency, threads,
records, failures. (The real NATS, Slack API and SMTP peers are in tests/integration/notifier.)"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from notifier_support import DB_PASSWORD, append, arun_execution, first, run_execution, upto

from rb_common.bus import Bus
from rb_common.events import Event, EventType
from rb_common.messages import StepOutcome
from rb_notifier import service
from rb_notifier.config import NotifierConfig
from rb_notifier.delivery import Receipt, TransientError
from rb_notifier.service import Notifier

SLACK_ONLY = """\
notify:
  - "on": [started, failed]
    slack: {channel: "#ops"}
  - "on": [failed]
    email: {to: [oncall@example.com]}
"""


class FakeJetStream:
    """Publishes land in an inbox; the execution's events are whatever the test says."""

    def __init__(self, events: list[Event]) -> None:
        self.events = events
        self.inbox: list[tuple[str, dict[str, Any], dict[str, str]]] = []

    async def publish(self, subject: str, payload: bytes, headers: dict[str, str], stream: str) -> None:
        assert stream == "RB_INBOX"
        self.inbox.append((subject, json.loads(payload), headers))

    def records(self, *, intents: bool = False) -> list[dict[str, Any]]:
        """The outcomes published (sent, failed; with `intents`, also sending and retrying)."""
        return [
            body
            for _, body, _ in self.inbox
            if intents or body["type"] in ("notification.sent", "notification.failed")
        ]

    def msg_ids(self) -> list[str]:
        return [
            h["Nats-Msg-Id"]
            for _, body, h in self.inbox
            if body["type"] in ("notification.sent", "notification.failed")
        ]


class FakeSlack:
    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.posts: list[dict[str, Any]] = []

    async def post(
        self,
        channel: str,
        text: str,
        blocks: list[dict[str, Any]],
        *,
        thread_ts: str | None = None,
        broadcast: bool = False,
        metadata: dict[str, str] | None = None,
    ) -> Receipt:
        if self.failures:
            self.failures -= 1
            raise TransientError("Slack API error internal_error (HTTP 500)")
        ts = f"1700000000.{len(self.posts) + 1:06d}"
        self.posts.append(
            {"channel": channel, "text": text, "thread_ts": thread_ts, "broadcast": broadcast, "ts": ts}
        )
        return Receipt(ts=ts, slack_channel="C0OPS", thread_ts=thread_ts)


@pytest.fixture
def wire(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Point the notifier's reads at a FakeJetStream."""

    def install(js: FakeJetStream) -> None:
        async def read_execution(
            _js: Any, execution_id: str, timeout: float = 10.0
        ) -> list[tuple[Event, int]]:
            return [(e, i) for i, e in enumerate(js.events, 1) if e.execution_id == execution_id]

        async def read_outcomes(_js: Any, execution_id: str, timeout: float = 10.0) -> list[StepOutcome]:
            return [
                StepOutcome.model_validate(body)
                for subject, body, _ in js.inbox
                if subject == f"rb.result.{execution_id}"
            ]

        monkeypatch.setattr(service.nats_bus, "read_execution", read_execution)
        monkeypatch.setattr(service, "read_outcomes", read_outcomes)

    return install


async def no_sleep(_: float) -> None:
    return None


def notifier(js: FakeJetStream, slack: FakeSlack, **config: Any) -> Notifier:
    defaults: dict[str, Any] = {"secrets": (DB_PASSWORD,), "retry_initial": 0.01}
    return Notifier(
        Bus(None, js),  # type: ignore[arg-type]
        NotifierConfig(**{**defaults, **config}),
        slack=slack,  # type: ignore[arg-type]
        sleep=no_sleep,
        predecessor_grace=0.0,
    )


@pytest.fixture(scope="module")
def failed_run() -> list[Event]:
    return run_execution(fail=True, notify=SLACK_ONLY, execution_id="exec-handle")


async def test_failure_goes_to_slack_in_the_start_thread_and_is_recorded(
    wire: Any, failed_run: list[Event]
) -> None:
    js = FakeJetStream(failed_run)
    wire(js)
    slack = FakeSlack()
    n = notifier(js, slack)
    for event in failed_run:
        await n.handle(event)
    started, failed = slack.posts
    assert started["thread_ts"] is None and not started["broadcast"]
    assert failed["thread_ts"] == started["ts"] and failed["broadcast"] and failed["channel"] == "C0OPS"
    assert "step enrich failed" in failed["text"]
    subjects = {subject for subject, _, _ in js.inbox}
    assert subjects == {"rb.result.exec-handle"}
    records = js.records()
    assert [(r["type"], r["data"]["channel"]) for r in records] == [
        ("notification.sent", "slack:#ops"),
        ("notification.sent", "slack:#ops"),
        ("notification.failed", "email:oncall@example.com"),  # no SMTP configured
    ]
    failed_event = first(failed_run, EventType.EXECUTION_FAILED)
    assert records[1]["data"] | {"ts": None} == {
        "event_id": failed_event.id,
        "event_type": "execution.failed",
        "channel": "slack:#ops",
        "attempts": 1,
        "ts": None,
        "error": None,
        "on": "failed",
        "slack_channel": "C0OPS",
        "thread_ts": started["ts"],
    }
    assert records[2]["data"]["error"] == "email is not configured (set RB_SMTP_URL)"
    assert records[2]["data"]["attempts"] == 1  # a permanent failure is not retried
    assert records[2]["data"]["permanent"] is True
    # Every attempt is announced before it is made (the intent), with the thread it goes to.
    intents = [r for r in js.records(intents=True) if r["type"] == "notification.sending"]
    assert [(r["data"]["channel"], r["data"]["attempts"]) for r in intents] == [
        ("slack:#ops", 1),
        ("slack:#ops", 1),
        ("email:oncall@example.com", 1),
    ]
    assert intents[1]["data"]["thread_ts"] == started["ts"] and intents[0]["data"].get("thread_ts") is None
    headers = js.msg_ids()
    assert headers == [
        f"notify:{first(failed_run, EventType.EXECUTION_STARTED).id}:slack:#ops",
        f"notify:{failed_event.id}:slack:#ops",
        f"notify:{failed_event.id}:email:oncall@example.com:failed",
    ]


async def test_a_redelivered_event_is_not_sent_again(wire: Any, failed_run: list[Event]) -> None:
    js = FakeJetStream(failed_run)
    wire(js)
    slack = FakeSlack()
    event = first(failed_run, EventType.EXECUTION_FAILED)
    await notifier(js, slack).handle(event)
    await notifier(js, slack).handle(event)  # a new process: only the record knows
    n = notifier(js, slack)
    await n.handle(event)
    await n.handle(event)  # same process: the in-memory fast path
    assert len(slack.posts) == 1


async def test_the_execution_events_are_the_durable_record(wire: Any, failed_run: list[Event]) -> None:
    """After the coordinator appended notification.sent, the inbox is not needed any more."""
    events = upto(failed_run, first(failed_run, EventType.EXECUTION_STARTED))
    js = FakeJetStream(events)
    wire(js)
    slack = FakeSlack()
    await notifier(js, slack).handle(events[-1])
    history = list(failed_run)
    for body in js.records(intents=True):  # as the coordinator records them
        append(history, EventType(body["type"]), body["data"])
    js.events, js.inbox = history, []  # the inbox has aged out
    n = notifier(js, slack)
    await n.handle(events[-1])  # redelivered: not sent again
    await n.handle(first(history, EventType.EXECUTION_FAILED))  # replies in the recorded thread
    assert [p["thread_ts"] for p in slack.posts] == [None, slack.posts[0]["ts"]]


async def test_transient_failures_are_retried_then_recorded(wire: Any, failed_run: list[Event]) -> None:
    js = FakeJetStream(failed_run)
    wire(js)
    slack = FakeSlack(failures=2)
    await notifier(js, slack).handle(first(failed_run, EventType.EXECUTION_STARTED))
    [record] = js.records()
    assert record["type"] == "notification.sent" and record["data"]["attempts"] == 3
    # Each attempt's outcome is on record: intent, retry (with its time), intent, retry, ...
    kinds = [(r["type"], r["data"]["attempts"]) for r in js.records(intents=True)]
    assert kinds == [
        ("notification.sending", 1),
        ("notification.retrying", 1),
        ("notification.sending", 2),
        ("notification.retrying", 2),
        ("notification.sending", 3),
        ("notification.sent", 3),
    ]

    js.inbox.clear()
    slack = FakeSlack(failures=99)
    await notifier(js, slack, max_attempts=4).handle(first(failed_run, EventType.EXECUTION_STARTED))
    [record] = js.records()
    assert record["type"] == "notification.failed" and record["data"]["attempts"] == 4
    assert "internal_error" in record["data"]["error"] and record["data"]["permanent"] is False


async def test_old_events_and_events_without_rules_send_nothing(wire: Any, failed_run: list[Event]) -> None:
    js = FakeJetStream(failed_run)
    wire(js)
    slack = FakeSlack()
    late = datetime.now(UTC) + timedelta(days=3)
    await Notifier(Bus(None, js), NotifierConfig(), slack=slack, clock=lambda: late).handle(failed_run[-1])  # type: ignore[arg-type]
    succeeded = await arun_execution(fail=False, notify="", execution_id="exec-no-rules")
    js.events = succeeded
    for event in succeeded:
        await notifier(js, slack).handle(event)
    assert slack.posts == [] and js.inbox == []


async def test_the_default_channel_covers_runbooks_without_rules(wire: Any) -> None:
    events = await arun_execution(fail=True, notify="", execution_id="exec-default")
    js = FakeJetStream(events)
    wire(js)
    slack = FakeSlack()
    n = notifier(js, slack, default_slack_channel="#rb-alerts")
    for event in events:
        await n.handle(event)
    [post] = slack.posts  # failed only: started is not in the default `on`
    assert post["channel"] == "#rb-alerts" and "failed" in post["text"]
    assert DB_PASSWORD not in json.dumps(js.records()) + json.dumps(slack.posts)


async def test_the_coordinator_appends_the_notifiers_records_after_the_end(
    wire: Any, failed_run: list[Event]
) -> None:
    """The contract with the executor: its coordinator turns each record into an event of the
    (already finished) execution, which is what a restarted notifier reads back."""
    from rb_engine.coordinator import fold
    from rb_engine.coordinator.applier import reported

    js = FakeJetStream(failed_run)
    wire(js)
    await notifier(js, FakeSlack()).handle(first(failed_run, EventType.EXECUTION_FAILED))
    state = fold(failed_run)
    assert state.terminal
    for _, body, _ in js.inbox:
        outcome = StepOutcome.model_validate(body)
        [(type_, data, actor, _)] = reported(state, outcome.type, outcome.data)
        assert type_ == outcome.type and data == outcome.data and actor == "rb-notifier"


async def test_a_notification_given_up_is_announced_on_the_fallback_channel(
    wire: Any, failed_run: list[Event]
) -> None:
    js = FakeJetStream(list(failed_run))
    wire(js)
    slack = FakeSlack()
    n = notifier(js, slack, fallback_slack_channel="#rb-fallback")
    await n.handle(first(failed_run, EventType.EXECUTION_FAILED))  # email: not configured, refused
    [failed] = [r for r in js.records() if r["type"] == "notification.failed"]
    history = js.events
    for body in js.records(intents=True):  # as the coordinator records them
        append(history, EventType(body["type"]), body["data"])
    announced = next(e for e in history if e.type == EventType.NOTIFICATION_FAILED)
    await n.handle(announced)
    fallback = [p for p in slack.posts if p["channel"] == "#rb-fallback"]
    assert len(fallback) == 1 and fallback[0]["thread_ts"] is None
    assert "Notification to email:oncall@example.com failed" in fallback[0]["text"]
    await notifier(js, slack, fallback_slack_channel="#rb-fallback").handle(announced)  # redelivered
    assert len([p for p in slack.posts if p["channel"] == "#rb-fallback"]) == 1
    assert failed["data"]["permanent"] is True
