"""Delivery: bounded retries with exponential backoff, and the idempotency bookkeeping.

A notification is identified by (event id, channel key). It is sent at most once per
identity as far as the record knows: the record is the `notification.sent` facts, durable in
the execution's events (appended by the coordinator) and, until the coordinator has appended
them, in the outcomes the notifier published to rb.result.<execution_id>.
"""

from __future__ import annotations

import asyncio
import random
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import ValidationError

from rb_common.events import EventType
from rb_common.payloads import EventPayload, NotificationFailed, NotificationSent

SENT = EventType.NOTIFICATION_SENT.value
FAILED = EventType.NOTIFICATION_FAILED.value

K = TypeVar("K")
V = TypeVar("V")


class DeliveryError(Exception):
    """A channel refused or could not take the message; `transient` errors are retried."""

    transient = True


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
    max_attempts: int = 5
    initial: float = 1.0
    maximum: float = 30.0
    jitter: float = 0.1  # +-10%

    def delay(self, failed_attempt: int, rng: Callable[[], float] = random.random) -> float:
        """Seconds to wait after attempt `failed_attempt` (1-based) failed."""
        base = min(self.maximum, self.initial * (2 ** (failed_attempt - 1)))
        return max(0.0, base * (1 + self.jitter * (2 * rng() - 1)))


@dataclass(frozen=True)
class Delivered:
    ok: bool
    attempts: int
    receipt: Receipt | None = None
    error: str | None = None


def describe_error(exc: BaseException) -> str:
    text = str(exc).strip()
    if isinstance(exc, DeliveryError):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def send_with_retries(
    send: Callable[[], Awaitable[Receipt]],
    backoff: Backoff,
    *,
    timeout: float | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    on_failure: Callable[[int, str, float | None], None] | None = None,
) -> Delivered:
    """Try `send` up to backoff.max_attempts times; a permanent error stops at once."""
    error = ""
    attempt = 0
    for attempt in range(1, backoff.max_attempts + 1):
        try:
            if timeout:
                receipt = await asyncio.wait_for(send(), timeout)
            else:
                receipt = await send()
            return Delivered(True, attempt, receipt)
        except asyncio.CancelledError:
            raise
        except TimeoutError:
            error, transient = f"no answer within {timeout}s", True
        except DeliveryError as exc:
            error, transient = describe_error(exc), exc.transient
        except Exception as exc:  # an unforeseen failure is retried, boundedly
            error, transient = describe_error(exc), True
        last = not transient or attempt >= backoff.max_attempts
        delay = None if last else backoff.delay(attempt)
        if on_failure:
            on_failure(attempt, error, delay)
        if delay is None:
            break
        await sleep(delay)
    return Delivered(False, attempt, None, error)


def outcome(
    event_id: str, event_type: str, channel: str, delivered: Delivered, trigger: str | None = None
) -> NotificationSent | NotificationFailed:
    """The notification.sent (delivered) or notification.failed record; optional keys only
    when they say something."""
    receipt = delivered.receipt or Receipt()
    optional: dict[str, Any] = {}
    if trigger:
        optional["on"] = trigger
    if receipt.slack_channel:
        optional["slack_channel"] = receipt.slack_channel
    if receipt.thread_ts:
        optional["thread_ts"] = receipt.thread_ts
    if receipt.note:
        optional["note"] = receipt.note
    model = NotificationSent if delivered.ok else NotificationFailed
    return model(
        event_id=event_id,
        event_type=event_type,
        channel=channel,
        attempts=delivered.attempts,
        ts=receipt.ts,
        error=delivered.error,
        **optional,
    )


def outcome_data(
    event_id: str, event_type: str, channel: str, delivered: Delivered, trigger: str | None = None
) -> dict[str, Any]:
    """The data of the notification.sent / notification.failed record."""
    return outcome(event_id, event_type, channel, delivered, trigger).dump()


def message_id(event_id: str, channel: str, type_: str = SENT) -> str:
    """The Nats-Msg-Id of a record. A failure gets its own id, so that a later success of the
    same notification is not dropped by JetStream's duplicate window."""
    base = f"notify:{event_id}:{channel}"
    return base if type_ == SENT else f"{base}:failed"


@dataclass(frozen=True)
class Thread:
    """The first Slack message of an execution in one channel: later ones reply to it."""

    ts: str
    slack_channel: str | None = None


@dataclass
class Ledger:
    """The notifications an execution's record says were sent, and its Slack threads."""

    sent: dict[tuple[str, str], NotificationSent] = field(default_factory=dict)
    threads: dict[str, Thread] = field(default_factory=dict)

    def record(self, payload: EventPayload) -> None:
        """One notification record (an event's payload); only deliveries count."""
        if not isinstance(payload, NotificationSent):
            return
        channel = payload.channel
        self.sent.setdefault((payload.event_id, channel), payload)
        if payload.ts and not payload.thread_ts and channel not in self.threads:
            self.threads[channel] = Thread(payload.ts, payload.slack_channel)

    def add(self, type_: str, data: dict[str, Any]) -> None:
        """A record as (type, data), e.g. an outcome still in the inbox; a malformed one is
        no record."""
        if type_ != SENT:
            return
        try:
            self.record(NotificationSent.model_validate(data))
        except ValidationError:
            return


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
