"""The notifier service: execution events in (durable JetStream consumer), Slack, email and
webhook messages out, every delivery recorded as a notification.sent|failed outcome.

Delivery is at-least-once from JetStream and made idempotent here: an event is acknowledged
only once each of its notifications is recorded, and a notification whose (event id, channel)
the record already holds is never sent again. Events of one execution are handled in order, so
the first Slack message of an execution is known before the next one replies in its thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from pydantic import ValidationError

from rb_common import bus as nats_bus
from rb_common.consumers import durable_config
from rb_common.events import Event, EventType
from rb_common.health import Health, nats_answers
from rb_common.messages import StepOutcome
from rb_common.model import NotifyEvent
from rb_common.payloads import ExecutionRequested, NotificationFailed, NotificationSent
from rb_common.pull import PullFeed
from rb_common.secrets import mask
from rb_common.settings import Settings
from rb_engine.coordinator import fold
from rb_notifier import render
from rb_notifier.config import NotifierConfig
from rb_notifier.delivery import (
    FAILED,
    SENT,
    Backoff,
    Delivered,
    Ledger,
    Lru,
    PermanentError,
    Receipt,
    Thread,
    message_id,
    outcome,
    send_with_retries,
)
from rb_notifier.email import EmailSender, build_message, stable_message_id
from rb_notifier.rules import (
    Destination,
    EmailDestination,
    SlackDestination,
    WebhookDestination,
    default_rules,
    destinations,
    trigger_of,
)
from rb_notifier.slack import SlackSender
from rb_notifier.summary import Summary, summarize
from rb_notifier.webhook import WebhookSender

log = logging.getLogger("rb_notifier")

NOTIFICATION_TYPES = {SENT, FAILED}
RECORD_ATTEMPTS = 5


async def read_outcomes(bus: nats_bus.Bus, execution_id: str, timeout: float = 10.0) -> list[StepOutcome]:
    """The outcomes published to rb.result.<execution_id> that are still in the inbox stream."""
    js = bus.js
    subject = bus.names.result_subject(execution_id)
    try:
        last = await js.get_last_msg(bus.names.inbox_stream, subject)
    except NotFoundError:
        return []
    last_seq = last.seq or 0
    out: list[StepOutcome] = []
    sub = await js.subscribe(subject, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL)
    try:
        while True:
            msg = await asyncio.wait_for(sub.next_msg(timeout=timeout), timeout)
            with contextlib.suppress(ValidationError):
                out.append(StepOutcome.model_validate_json(msg.data))
            if msg.metadata.sequence.stream >= last_seq:
                return out
    finally:
        await sub.unsubscribe()


class Notifier:
    """Turns one execution event into its notifications. No consumer plumbing here."""

    def __init__(
        self,
        bus: nats_bus.Bus,
        config: NotifierConfig,
        *,
        slack: SlackSender | None = None,
        email: EmailSender | None = None,
        webhook: WebhookSender | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        memory: int = 50_000,
    ) -> None:
        self.bus = bus
        self.js = bus.js
        self.config = config
        self.slack = slack
        self.email = email
        self.webhook = webhook
        self.clock = clock
        self.sleep = sleep
        self.backoff = Backoff(config.max_attempts, config.retry_initial, config.retry_max)
        # The fast, in-memory side of idempotency; the record is the durable side.
        self.handled: Lru[str, bool] = Lru(memory)
        self.sent: Lru[tuple[str, str], NotificationSent] = Lru(memory)
        self.threads: Lru[tuple[str, str], Thread] = Lru(memory)

    async def handle(self, event: Event) -> None:
        """Deliver every notification `event` calls for; returns once each one is recorded."""
        trigger = trigger_of(event.type)
        if trigger is None or self.handled.get(event.id):
            return
        age = (self.clock() - event.time).total_seconds()
        if self.config.max_event_age and age > self.config.max_event_age:
            log.info("not announcing %s of %s: %.0fs old", event.type, event.execution_id, age)
            return
        events = [e for e, _ in await nats_bus.read_execution(self.bus, event.execution_id)]
        # The execution as it stood at this event: everything up to it in stream order.
        position = next((i for i, e in enumerate(events) if e.id == event.id), None)
        history = (
            events[: position + 1] if position is not None else [e for e in events if e.seq <= event.seq]
        )
        if not history or history[0].type != EventType.EXECUTION_REQUESTED:
            log.warning(
                "%s: no execution.requested before %s; nothing to notify", event.execution_id, event.id
            )
            return
        try:
            state = fold(history)
            rules = list(state.definition.notify) or default_rules(
                self.config.default_slack_channel, self.config.default_on
            )
            targets = destinations(rules, trigger)
            requested = history[0]
            summary = summarize(
                state,
                event,
                trigger,
                public_url=self.config.public_url,
                secrets=self.config.secrets,
                actor=requested.payload_as(ExecutionRequested).actor or requested.actor,
            )
        except Exception:
            # A stream this code cannot make sense of will not improve on redelivery.
            log.exception(
                "%s: cannot summarise the execution at %s; not notifying", event.execution_id, event.id
            )
            return
        if targets:
            ledger = await self._ledger(event.execution_id, events)
            results = await asyncio.gather(
                *(self._notify(event, trigger, summary, t, ledger) for t in targets), return_exceptions=True
            )
            for result in results:  # every channel has finished; then the first error, if any
                if isinstance(result, BaseException):
                    raise result
        self.handled.put(event.id, True)

    async def _ledger(self, execution_id: str, events: list[Event]) -> Ledger:
        """What the record says was sent: the execution's notification events, then the outcomes
        published but not yet appended by the coordinator."""
        ledger = Ledger()
        for event in events:
            if event.type in NOTIFICATION_TYPES:
                ledger.record(event.payload)
        for published in await read_outcomes(self.bus, execution_id):
            ledger.add(published.type, published.data)
        return ledger

    async def _notify(
        self, event: Event, trigger: NotifyEvent, summary: Summary, target: Destination, ledger: Ledger
    ) -> None:
        key = target.key
        identity = (event.id, key)
        remembered = self.sent.get(identity)
        if remembered is not None or identity in ledger.sent:
            if remembered is not None and identity not in ledger.sent:
                await self._record(event.execution_id, remembered)  # sent, record lost
            log.info("%s to %s was sent already", event.type, key)
            return
        thread = self.threads.get((event.execution_id, key)) or ledger.threads.get(key)
        send = self._sender(event, summary, target, thread)

        def on_failure(attempt: int, error: str, delay: float | None) -> None:
            then = f"retrying in {delay:.1f}s" if delay is not None else "giving up"
            log.warning("%s to %s, attempt %d: %s; %s", event.type, key, attempt, self._mask(error), then)

        delivered = await send_with_retries(
            send, self.backoff, timeout=self.config.send_timeout, sleep=self.sleep, on_failure=on_failure
        )
        if delivered.error:
            delivered = Delivered(
                delivered.ok, delivered.attempts, delivered.receipt, self._mask(delivered.error)
            )
        record = outcome(event.id, str(event.type), key, delivered, trigger)
        if isinstance(record, NotificationSent):
            self.sent.put(identity, record)
            receipt = delivered.receipt or Receipt()
            if receipt.ts and thread is None:
                self.threads.put((event.execution_id, key), Thread(receipt.ts, receipt.slack_channel))
            log.info(
                "%s of %s sent to %s (attempt %d)", event.type, event.execution_id, key, delivered.attempts
            )
        await self._record(event.execution_id, record)

    def _sender(
        self, event: Event, summary: Summary, target: Destination, thread: Thread | None
    ) -> Callable[[], Awaitable[Receipt]]:
        if isinstance(target, SlackDestination):
            slack = self.slack
            text, blocks = render.slack_text(summary), render.slack_blocks(summary)

            async def to_slack() -> Receipt:
                if slack is None:
                    raise PermanentError("Slack is not configured (set RB_SLACK_TOKEN)")
                channel = (thread.slack_channel or target.channel) if thread else target.channel
                return await slack.post(
                    channel,
                    text,
                    blocks,
                    thread_ts=thread.ts if thread else None,
                    broadcast=summary.attention,
                )

            return to_slack
        if isinstance(target, EmailDestination):
            email = self.email
            message = build_message(
                sender=self.config.notify_from,
                to=target.to,
                cc=target.cc,
                subject=render.email_subject(summary),
                text=render.email_text(summary),
                html=render.email_html(summary),
                message_id=stable_message_id(f"{event.id}:{target.key}"),
                thread_id=stable_message_id(f"{event.execution_id}:{target.key}"),
            )

            async def to_email() -> Receipt:
                if email is None:
                    raise PermanentError("email is not configured (set RB_SMTP_URL)")
                return await email.send(message)

            return to_email
        assert isinstance(target, WebhookDestination)
        webhook = self.webhook
        payload = render.webhook_payload(summary)
        url = target.url

        async def to_webhook() -> Receipt:
            if webhook is None:
                raise PermanentError("webhooks are not configured")
            return await webhook.post(url, payload, idempotency_key=message_id(event.id, target.key))

        return to_webhook

    async def _record(self, execution_id: str, record: NotificationSent | NotificationFailed) -> None:
        """Publish the outcome for the coordinator to append; raises if NATS will not take it."""
        type_ = record.TYPE.value
        published = StepOutcome(execution_id=execution_id, type=type_, data=record.dump())
        headers = {"Nats-Msg-Id": message_id(record.event_id, record.channel, type_)}
        for attempt in range(1, RECORD_ATTEMPTS + 1):
            try:
                await self.js.publish(
                    self.bus.names.result_subject(execution_id),
                    published.encode(),
                    headers=headers,
                    stream=self.bus.names.inbox_stream,
                )
                return
            except Exception:
                if attempt == RECORD_ATTEMPTS:
                    raise
                log.warning("recording %s for %s failed; retrying", type_, execution_id, exc_info=True)
                await self.sleep(min(5.0, 0.2 * 2**attempt))

    def _mask(self, text: str) -> str:
        return str(mask(text, self.config.secrets))


def _consumer_config(
    config: NotifierConfig, names: nats_bus.Names, name: str, deliver: DeliverPolicy
) -> ConsumerConfig:
    return durable_config(
        name,
        config.filter_subject or names.all_of("exec"),
        ack_wait=config.ack_wait,
        max_ack_pending=max(config.max_in_flight * 4, 256),
        deliver=deliver,
    )


async def ensure_consumer(bus: nats_bus.Bus, config: NotifierConfig, name: str) -> None:
    """Create the durable consumer, or bring an existing one's settings up to date (keeping
    where it starts, which cannot change)."""
    js, stream = bus.js, bus.names.events_stream
    try:
        info = await js.consumer_info(stream, name)
    except NotFoundError:
        deliver = DeliverPolicy.ALL if config.deliver_all else DeliverPolicy.NEW
    else:
        deliver = info.config.deliver_policy or DeliverPolicy.ALL
    await js.add_consumer(stream, _consumer_config(config, bus.names, name, deliver))


async def process_message(notifier: Notifier, msg: Msg) -> None:
    try:
        event = Event.from_json(msg.data)
    except ValidationError as exc:
        log.error("dropping unreadable event on %s: %s", msg.subject, exc.errors()[0]["msg"])
        await msg.term()
        return
    try:
        await notifier.handle(event)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("notifying %s of %s failed; it will be redelivered", event.type, event.execution_id)
        with contextlib.suppress(Exception):
            await msg.nak(delay=2.0)
        return
    await msg.ack()


class InOrder:
    """The feed's handler: one execution's events in order, different executions in parallel."""

    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier
        self.chains: dict[str, asyncio.Future[None]] = {}

    async def __call__(self, msg: Msg) -> None:
        execution_id = msg.subject.rsplit(".", 1)[-1]
        previous = self.chains.get(execution_id)
        mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.chains[execution_id] = mine
        try:
            if previous is not None:
                await asyncio.wait([previous])
            await process_message(self.notifier, msg)
        finally:
            mine.set_result(None)
            if self.chains.get(execution_id) is mine:
                del self.chains[execution_id]


async def run_notifier(
    settings: Settings, stop: asyncio.Event, *, consumer: str = "notifier", health: Health | None = None
) -> None:
    """The notifier service until `stop` is set. The durable consumer is `consumer`, or
    RB_NOTIFIER_CONSUMER when `consumer` is left at its default."""
    config = NotifierConfig.from_settings(settings)
    await serve(
        settings.nats_url, config, stop, consumer=consumer if consumer != "notifier" else None, health=health
    )


async def serve(
    nats_url: str,
    config: NotifierConfig,
    stop: asyncio.Event,
    *,
    consumer: str | None = None,
    health: Health | None = None,
) -> None:
    name = consumer or config.consumer
    bus = await nats_bus.connect(nats_url, namespace=config.namespace, name=f"rb-notifier-{name}")
    if health is not None:
        health.add("nats", lambda: nats_answers(bus.nc))
    slack = (
        SlackSender(config.slack_token, config.slack_base_url, timeout=config.send_timeout)
        if config.slack_token or config.slack_base_url
        else None
    )
    email = EmailSender(config.smtp, config.notify_from) if config.smtp else None
    webhook = WebhookSender(timeout=config.send_timeout)
    try:
        await ensure_consumer(bus, config, name)
        notifier = Notifier(bus, config, slack=slack, email=email, webhook=webhook)
        log.info(
            "rb-notifier ready: consumer %s on %s (slack %s, email %s)",
            name,
            config.filter_subject or bus.names.all_of("exec"),
            "on" if slack else "off",
            config.smtp.describe() if config.smtp else "off",
        )
        feed = PullFeed(
            bus.nc,
            bus.names.events_stream,
            name,
            InOrder(notifier),
            capacity=config.max_in_flight,
            heartbeat=max(0.5, config.ack_wait / 3),
            drain=10.0,  # a message being sent is let finish: fewer repeats after a restart
        )
        await feed.run(stop)
    finally:
        await webhook.close()
        with contextlib.suppress(Exception):
            await bus.close()
