"""Delivery: one attempt at a time, capped backoff with jitter (or the channel's Retry-After),
and the bookkeeping that makes delivery durable and idempotent.

A notification is identified by (event id, channel key). Its record is the notifier's
`notification.sending` (the intent, before each attempt), `notification.retrying` (a failed
attempt and when to try again), `notification.sent` and `notification.failed` facts: durable in
the execution's events (appended by the coordinator) and, until the coordinator has appended
them, in the outcomes the notifier published to rb.result.<execution_id>. A `Ledger` folds them.
"""

from __future__ import annotations

import asyncio
import random
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import ValidationError

from rb_common.events import EventType
from rb_common.payloads import (
    EventPayload,
    NotificationFailed,
    NotificationRetrying,
    NotificationSending,
    NotificationSent,
)

SENT = EventType.NOTIFICATION_SENT.value
FAILED = EventType.NOTIFICATION_FAILED.value
SENDING = EventType.NOTIFICATION_SENDING.value
RETRYING = EventType.NOTIFICATION_RETRYING.value

K = TypeVar("K")
V = TypeVar("V")


class DeliveryError(Exception):
    """A channel refused or could not take the message; `transient` errors are retried.
    `retry_after`: seconds the channel asked us to wait (Slack's or a webhook's Retry-After)."""

    transient = True

    def __init__(self, text: str = "", *, retry_after: float | None = None) -> None:
        super().__init__(text)
        self.retry_after = retry_after


class TransientError(DeliveryError):
    transient = True


class PermanentError(DeliveryError):
    transient = False


@dataclass(frozen=True)
class Receipt:
    """What a channel answered: Slack's ts and channel id, or nothing much."""

    ts: str | None = None
    slack_channel: str | None = None
    thread_ts: str | None = None
    note: str | None = None


@dataclass(frozen=True)
class Backoff:
    """Capped exponential backoff with jitter; `max_attempts` 0: no limit (the deadline is)."""

    max_attempts: int = 0
    initial: float = 1.0
    maximum: float = 300.0
    jitter: float = 0.1  # +-10%

    def delay(self, failed_attempt: int, rng: Callable[[], float] = random.random) -> float:
        """Seconds to wait after attempt `failed_attempt` (1-based) failed."""
        base = min(self.maximum, self.initial * (2 ** min(failed_attempt - 1, 40)))
        return max(0.0, base * (1 + self.jitter * (2 * rng() - 1)))

    def after(
        self, failed_attempt: int, retry_after: float | None, rng: Callable[[], float] = random.random
    ) -> float:
        """The wait before the next attempt: what the channel asked for (never less, a little
        more so that many waiting senders do not return at once), else the backoff."""
        if retry_after is not None and retry_after >= 0:
            return retry_after * (1 + self.jitter * rng())
        return self.delay(failed_attempt, rng)


@dataclass(frozen=True)
class Attempt:
    """One try: delivered (receipt), or the error and whether it is worth another try."""

    receipt: Receipt | None = None
    error: str | None = None
    transient: bool = True
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def describe_error(exc: BaseException) -> str:
    text = str(exc).strip()
    if isinstance(exc, DeliveryError):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def attempt_once(send: Callable[[], Awaitable[Receipt]], *, timeout: float | None = None) -> Attempt:
    """Call `send` once and classify what happened."""
    try:
        receipt = await (asyncio.wait_for(send(), timeout) if timeout else send())
        return Attempt(receipt=receipt)
    except asyncio.CancelledError:
        raise
    except TimeoutError:
        return Attempt(error=f"no answer within {timeout}s")
    except DeliveryError as exc:
        return Attempt(error=describe_error(exc), transient=exc.transient, retry_after=exc.retry_after)
    except Exception as exc:  # an unforeseen failure is retried, until the deadline
        return Attempt(error=describe_error(exc))


def message_id(event_id: str, channel: str, type_: str = SENT, attempt: int | None = None) -> str:
    """The Nats-Msg-Id of a record. Each kind of record gets its own id (an intent and a retry
    per attempt), so that a later success of the same notification is not dropped by
    JetStream's duplicate window."""
    base = f"notify:{event_id}:{channel}"
    if type_ == SENT:
        return base
    if type_ == FAILED:
        return f"{base}:failed"
    kind = type_.rsplit(".", 1)[-1]
    return f"{base}:{kind}:{attempt or 0}"


@dataclass(frozen=True)
class Thread:
    """The first Slack message of an execution in one channel: later ones reply to it."""

    ts: str
    slack_channel: str | None = None


@dataclass
class Track:
    """What the record says about one notification (event id, channel)."""

    attempts: int = 0  # the highest attempt an intent was recorded for
    first_at: datetime | None = None  # the first intent
    deadline: datetime | None = None
    intent: NotificationSending | None = None  # the latest intent
    outcome_attempt: int = 0  # the highest attempt with a recorded outcome
    retry_at: datetime | None = None
    error: str | None = None
    sent: NotificationSent | None = None
    failed: NotificationFailed | None = None

    @property
    def final(self) -> bool:
        return self.sent is not None or self.failed is not None

    @property
    def unanswered(self) -> NotificationSending | None:
        """An intent without an outcome: the attempt was cut short (a crash, a lost answer);
        whether the message went out is unknown."""
        if self.final or self.intent is None or self.outcome_attempt >= self.attempts:
            return None
        return self.intent


def _time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


@dataclass
class Ledger:
    """The notifications an execution's record knows: each one's track, and the Slack threads."""

    tracks: dict[tuple[str, str], Track] = field(default_factory=dict)
    threads: dict[str, Thread] = field(default_factory=dict)

    @property
    def sent(self) -> dict[tuple[str, str], NotificationSent]:
        return {k: t.sent for k, t in self.tracks.items() if t.sent is not None}

    def track(self, event_id: str, channel: str) -> Track:
        return self.tracks.get((event_id, channel)) or Track()

    def record(self, payload: EventPayload) -> None:
        """One notification record (an event's payload, or an outcome still in the inbox); the
        same record seen twice (both places) changes nothing."""
        if not isinstance(
            payload, NotificationSending | NotificationRetrying | NotificationSent | NotificationFailed
        ):
            return
        channel = payload.channel
        track = self.tracks.setdefault((payload.event_id, channel), Track())
        attempt = payload.attempts or 0
        if isinstance(payload, NotificationSending):
            at = _time(payload.at)
            if track.first_at is None or (at and at < track.first_at):
                track.first_at = at
            track.deadline = track.deadline or _time(payload.deadline)
            if attempt >= track.attempts:
                track.attempts, track.intent = attempt, payload
            return
        track.outcome_attempt = max(track.outcome_attempt, attempt)
        track.attempts = max(track.attempts, attempt)
        if isinstance(payload, NotificationRetrying):
            retry_at = _time(payload.retry_at)
            if retry_at and (track.retry_at is None or retry_at > track.retry_at):
                track.retry_at = retry_at
            track.error = payload.error
            return
        if isinstance(payload, NotificationFailed):
            if track.sent is None:
                track.failed = track.failed or payload
            return
        track.sent = track.sent or payload
        track.failed = None
        if payload.ts and not payload.thread_ts and channel not in self.threads:
            self.threads[channel] = Thread(payload.ts, payload.slack_channel)

    def add(self, type_: str, data: dict[str, Any]) -> None:
        """A record as (type, data), e.g. an outcome still in the inbox; a malformed one is
        no record."""
        model = RECORDS.get(type_)
        if model is None:
            return
        try:
            self.record(model.model_validate(data))
        except ValidationError:
            return


RECORDS: dict[
    str, type[NotificationSending | NotificationRetrying | NotificationSent | NotificationFailed]
] = {
    SENDING: NotificationSending,
    RETRYING: NotificationRetrying,
    SENT: NotificationSent,
    FAILED: NotificationFailed,
}


def ledger_from(records: Iterable[tuple[str, dict[str, Any]]]) -> Ledger:
    """Fold (type, data) notification records, oldest first, into a Ledger."""
    ledger = Ledger()
    for type_, data in records:
        ledger.add(type_, data)
    return ledger


class Lru(Generic[K, V]):
    """A bounded mapping: the fast, in-memory side of the bookkeeping."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    def pop(self, key: K, default: V | None = None) -> V | None:
        return self._items.pop(key, default)

    def setdefault(self, key: K, value: V) -> V:
        current = self.get(key)
        if current is None:
            self.put(key, value)
            return value
        return current

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)
