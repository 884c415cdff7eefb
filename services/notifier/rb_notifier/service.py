"""The notifier service: execution events in (durable JetStream consumer), Slack, email and
webhook messages out, every delivery recorded as a notification.sent|failed outcome.

Delivery is at-least-once from JetStream and made idempotent and durable here: before each
attempt the intent is recorded (notification.sending), after it the outcome (sent, retrying with
`retry_at`, failed); an event is acknowledged once each of its notifications is sent or failed,
and handed back (NAK with the wait) while one waits for a retry. A notification whose record
shows an intent without an outcome (the notifier died mid-send) is looked up in Slack by its
message metadata before it is sent again. Each channel is delivered on its own; within a
channel an execution's messages go out in order, a reply only after its thread's parent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from pydantic import ValidationError

from rb_common import bus as nats_bus
from rb_common import logs, tracing
from rb_common.consumers import durable_config
from rb_common.events import Event, EventType
from rb_common.health import Health, watch_bus
from rb_common.messages import StepOutcome
from rb_common.model import NotifyEvent
from rb_common.payloads import (
    ExecutionRequested,
    NotificationFailed,
    NotificationRetrying,
    NotificationSending,
    NotificationSent,
)
from rb_common.pull import PullFeed
from rb_common.secrets import mask
from rb_common.settings import Settings
from rb_engine.coordinator import fold
from rb_engine.egress import EgressPolicy, EgressTransport
from rb_notifier import approval_mail, approval_outcome, metrics, render, step_notify
from rb_notifier.claims import Busy, Claims
from rb_notifier.config import NotifierConfig
from rb_notifier.delivery import (
    FAILED,
    RETRYING,
    SENDING,
    SENT,
    Backoff,
    DeliveryError,
    Ledger,
    Lru,
    PermanentError,
    Receipt,
    Thread,
    attempt_once,
    message_id,
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
from rb_notifier.step_notify import StepNotice
from rb_notifier.summary import HEADLINES, Summary, summarize
from rb_notifier.webhook import WebhookSender

log = logging.getLogger("rb_notifier")

NOTIFICATION_TYPES = {SENDING, RETRYING, SENT, FAILED}
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


INLINE_WAIT = 2.0  # shorter waits are slept here; longer ones hand the event back (NAK) for later
PREDECESSOR_POLL = 0.5  # how soon to look again when an earlier message of the thread is not out
PREDECESSOR_GRACE = 10.0  # how long to wait for an earlier message that nobody has started


@dataclass
class Item:
    """One notification to deliver: (event, channel) and what to say."""

    event: Event
    trigger: NotifyEvent
    summary: Summary
    target: Destination
    # Earlier events of the execution that notify the same channel: they go first.
    after: list[str] = field(default_factory=list)
    fallback: bool = False
    step: StepNotice | None = None  # a notify step's channel (rb_notifier.step_notify)

    @property
    def identity(self) -> tuple[str, str]:
        return (self.event.id, self.target.key)


@dataclass
class Plan:
    items: list[Item] = field(default_factory=list)


class Notifier:
    """Turns one execution event into its notifications. No consumer plumbing here.

    Each channel is delivered on its own: one attempt at a time, with the intent recorded
    before and the outcome after; a wait for a retry of 2 s or more hands the event back to
    JetStream with that delay (the record keeps `retry_at`, so a restarted notifier waits too).
    """

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
        predecessor_grace: float = PREDECESSOR_GRACE,
        step_webhook: WebhookSender | None = None,
        claims: Claims | None = None,
    ) -> None:
        self.bus = bus
        self.js = bus.js
        self.config = config
        self.slack = slack
        self.email = email
        self.webhook = webhook
        # Webhooks of notify steps: their URLs come from runbooks, so the egress policy applies.
        self.step_webhook = step_webhook
        self.clock = clock
        self.sleep = sleep
        self.backoff = Backoff(config.max_attempts, config.retry_initial, config.retry_max)
        # The fast, in-memory side of idempotency; the record is the durable side.
        self.handled: Lru[str, bool] = Lru(memory)
        self.sent: Lru[tuple[str, str], NotificationSent] = Lru(memory)
        # Deliveries running in this process, by (event id, channel): later messages of the same
        # thread wait for them.
        self.active: dict[tuple[str, str], asyncio.Event] = {}
        # Since when a message has waited for an earlier one that nobody started.
        self.waiting: Lru[tuple[str, str], datetime] = Lru(memory)
        self.predecessor_grace = predecessor_grace
        # Who is posting which Slack message, across notifiers (a JetStream KV bucket; the
        # service always has them, None only where one notifier is alone by construction).
        self.claims = claims

    async def handle(self, event: Event) -> float | None:
        """Deliver every notification `event` calls for. None: each one is recorded as sent or
        failed; a number: some wait for a retry, hand the event back for that many seconds."""
        plan = await self.prepare(event)
        wait = await self.deliver(plan)
        if wait is None:
            await approval_outcome.announce(self, event)  # an approval step settled: its message says so
        return wait

    async def prepare(self, event: Event) -> Plan:
        """What `event` calls for. Registers its deliveries as active, so that later events of
        the execution (prepared after this one) wait for them."""
        if self.handled.get(event.id):
            return Plan()
        fallback = event.type == EventType.NOTIFICATION_FAILED
        trigger = trigger_of(event.type)
        notice = step_notify.notice_of(event)
        if trigger is None and notice is None and not (fallback and self._fallbacks()):
            return Plan()
        age = (self.clock() - event.time).total_seconds()
        if self.config.max_event_age and age > self.config.max_event_age:
            log.info("not announcing %s of %s: %.0fs old", event.type, event.execution_id, age)
            if notice is not None:  # a notify step must not wait forever
                await step_notify.report(
                    self, notice, event, [], error=f"not sent: the step is {age:.0f}s old"
                )
            return Plan()
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
            return Plan()
        try:
            if notice is not None:
                items = step_notify.items(self, event, history, notice)
                if not items:
                    await step_notify.report(self, notice, event, [])
            elif fallback:
                items = self._fallback_items(event, history)
            else:
                items = self._items(event, history, trigger)
        except Exception:
            # A stream this code cannot make sense of will not improve on redelivery.
            log.exception(
                "%s: cannot summarise the execution at %s; not notifying", event.execution_id, event.id
            )
            return Plan()
        for item in items:
            self.active.setdefault(item.identity, asyncio.Event())
        return Plan(items)

    def _summary(self, history: list[Event], event: Event, trigger: NotifyEvent) -> tuple[Any, Summary]:
        state = fold(history)
        requested = history[0]
        summary = summarize(
            state,
            event,
            trigger,
            public_url=self.config.public_url,
            secrets=self.config.secrets,
            actor=requested.payload_as(ExecutionRequested).actor or requested.actor,
            link_key=self.config.link_key,
            link_ttl=self.config.link_ttl,
        )
        return state, summary

    def _rules(self, state: Any) -> list[Any]:
        return list(state.definition.notify) or default_rules(
            self.config.default_slack_channel, self.config.default_on
        )

    def _items(self, event: Event, history: list[Event], trigger: NotifyEvent | None) -> list[Item]:
        assert trigger is not None
        state, summary = self._summary(history, event, trigger)
        rules = self._rules(state)
        targets = destinations(rules, trigger)
        items = []
        for target in targets:
            after = []
            for earlier in history[:-1]:
                earlier_trigger = trigger_of(earlier.type)
                if earlier_trigger is None or earlier.id == event.id:
                    continue
                age = (self.clock() - earlier.time).total_seconds()
                if self.config.max_event_age and age > self.config.max_event_age:
                    continue  # never announced
                if any(t.key == target.key for t in destinations(rules, earlier_trigger)):
                    after.append(earlier.id)
            items.append(Item(event, trigger, summary, target, after))
        return items

    def _fallbacks(self) -> list[Destination]:
        config = self.config
        out: list[Destination] = []
        if config.fallback_slack_channel:
            out.append(SlackDestination(config.fallback_slack_channel))
        if config.fallback_email:
            out.append(EmailDestination(config.fallback_email))
        if config.fallback_webhook:
            out.append(WebhookDestination(config.fallback_webhook))
        return out

    def _fallback_items(self, event: Event, history: list[Event]) -> list[Item]:
        """notification.failed: say so on the fallback channels (not about a fallback message,
        and not on the channel that failed)."""
        failed = event.payload_as(NotificationFailed)
        if failed.event_type == EventType.NOTIFICATION_FAILED.value:
            return []  # a fallback message that failed: nowhere left to say it
        trigger = cast(NotifyEvent, failed.on) if failed.on in HEADLINES else "failed"
        _, summary = self._summary(history, event, trigger)
        why = "refused for good" if failed.permanent else "gave up"
        summary = replace(
            summary,
            headline=f"Notification to {failed.channel} failed: {summary.runbook_name} {HEADLINES[trigger]}",
            error=self._mask(
                f"{why} after {failed.attempts or 0} attempt(s): {failed.error or 'unknown error'}"
            ),
            failed_step=None,
        )
        return [
            Item(event, trigger, summary, target, [], fallback=True)
            for target in self._fallbacks()
            if target.key != failed.channel
        ]

    async def deliver(self, plan: Plan) -> float | None:
        """Every item of the plan, each channel on its own; the shortest wait left, if any."""
        if not plan.items:
            return None
        results = await asyncio.gather(*(self._deliver(item) for item in plan.items), return_exceptions=True)
        for result in results:  # every channel has finished; then the first error, if any
            if isinstance(result, BaseException):
                raise result
        waits = [r for r in results if isinstance(r, float)]
        if waits:
            return min(waits)
        first = plan.items[0]
        if first.step is not None:  # a notify step: all its channels are done, report it
            await step_notify.report(self, first.step, first.event, [item.target.key for item in plan.items])
        self.handled.put(first.event.id, True)
        return None

    async def _deliver(self, item: Item) -> float | None:
        mine = self.active.setdefault(item.identity, asyncio.Event())
        try:
            while True:
                for earlier in item.after:
                    running = self.active.get((earlier, item.target.key))
                    if running is not None and running is not mine:
                        await running.wait()
                wait = await self._step(item)
                if wait is None:
                    return None
                if wait >= INLINE_WAIT:
                    return wait
                await self.sleep(wait)
        finally:
            mine.set()
            if self.active.get(item.identity) is mine:
                del self.active[item.identity]

    async def _step(self, item: Item) -> float | None:
        """One step of one notification, from what the record says: done (None) or the seconds
        to wait before the next step. A Slack message is posted under a claim
        (rb_notifier.claims): while another notifier holds a live one, this one waits."""
        if not isinstance(item.target, SlackDestination) or self.claims is None:
            return await self._attempt(item)
        event, key = item.event, item.target.key
        held = await self.claims.acquire(event.id, key)
        if isinstance(held, Busy):
            log.info(
                "%s of %s to %s is being sent by another notifier (claim %s); waiting %.1fs",
                event.type,
                event.execution_id,
                key,
                held.owner,
                held.wait,
            )
            return max(PREDECESSOR_POLL, held.wait)
        if held.taken_over:
            log.warning(
                "%s of %s to %s: the claim of %s outlived its lease; taken over",
                event.type,
                event.execution_id,
                key,
                held.taken_over,
            )
        try:
            return await self._attempt(item)
        finally:
            try:
                await self.claims.release(held)
            except Exception:  # it expires after its lease
                log.warning("releasing the claim on %s failed", item.identity, exc_info=True)

    async def _attempt(self, item: Item) -> float | None:
        """One step of one notification, from what the record says (under its claim, for Slack)."""
        event, target = item.event, item.target
        key = target.key
        execution_id = event.execution_id
        remembered = self.sent.get(item.identity)
        ledger = await self._ledger(execution_id)
        track = ledger.track(event.id, key)
        if remembered is not None and not track.final:
            await self._record(execution_id, remembered)  # sent, record lost
            return None
        if track.final:
            done = "sent" if track.sent is not None else "given up"
            log.info("%s to %s was %s already", event.type, key, done)
            return None
        now = self.clock()
        for earlier in item.after:
            before = ledger.track(earlier, key)
            if before.final:
                continue
            # A reply never goes before its parent, nor a message before an earlier one. An
            # earlier one nobody has started (a consumer that began after it, a redelivery
            # that comes later) is waited for a little, then no longer.
            if before.attempts == 0 and (earlier, key) not in self.active:
                first_seen = self.waiting.setdefault(item.identity, now)
                if (now - first_seen).total_seconds() >= self.predecessor_grace:
                    continue
            if before.retry_at and before.retry_at > now:
                return max(PREDECESSOR_POLL, (before.retry_at - now).total_seconds())
            return PREDECESSOR_POLL
        self.waiting.pop(item.identity, None)
        thread = (
            None if item.fallback or not isinstance(target, SlackDestination) else ledger.threads.get(key)
        )
        deadline = track.deadline or now + timedelta(seconds=self.config.deadline(key))
        unanswered = track.unanswered
        if unanswered is not None:
            found = await self._find(item, unanswered)
            if found is not None:
                record = self._outcome(NotificationSent, item, track.attempts, receipt=found, found=True)
                log.info(
                    "%s of %s to %s was out already (found after a restart)", event.type, execution_id, key
                )
                await self._finish(item, record)
                return None
        elif track.retry_at is not None and track.retry_at > now:
            return (track.retry_at - now).total_seconds()
        if now >= deadline:
            return await self._give_up(item, track.attempts, track.error or "no attempt succeeded", deadline)
        if self.backoff.max_attempts and track.attempts >= self.backoff.max_attempts:
            return await self._give_up(item, track.attempts, track.error or "no attempt succeeded", None)
        attempt = track.attempts + 1
        intent = NotificationSending(
            event_id=event.id,
            event_type=str(event.type),
            channel=key,
            attempts=attempt,
            at=now.isoformat(),
            deadline=deadline.isoformat(),
            on=item.trigger,
            **self._thread_fields(thread),
        )
        await self._record(execution_id, intent)
        # The delivery's span: a child of the execution's (the event message's context).
        with tracing.span(
            f"notify {metrics.kind(item.target)}",
            kind="client",
            attributes={"rb.execution_id": execution_id, "rb.attempt": attempt},
        ):
            result = await attempt_once(self._sender(item, thread), timeout=self.config.send_timeout)
            if not result.ok:
                tracing.failed("not delivered")
        if result.ok:
            metrics.delivered(item.target, "sent")
            receipt = result.receipt or Receipt()
            record = self._outcome(NotificationSent, item, attempt, receipt=receipt)
            log.info("%s of %s sent to %s (attempt %d)", event.type, execution_id, key, attempt)
            await self._finish(item, record)
            return None
        error = self._mask(result.error or "")
        if not result.transient:
            metrics.delivered(item.target, "failed")
            log.warning(
                "%s of %s to %s, attempt %d: %s; permanent, not retried",
                event.type,
                execution_id,
                key,
                attempt,
                error,
            )
            await self._record(
                execution_id, self._outcome(NotificationFailed, item, attempt, error=error, permanent=True)
            )
            return None
        delay = self.backoff.after(attempt, result.retry_after)
        after = self.clock()
        retry_at = after + timedelta(seconds=delay)
        if retry_at > deadline or (self.backoff.max_attempts and attempt >= self.backoff.max_attempts):
            metrics.delivered(item.target, "failed")
            return await self._give_up(item, attempt, error, deadline if retry_at > deadline else None)
        log.warning(
            "%s of %s to %s, attempt %d: %s; retrying in %.1fs",
            event.type,
            execution_id,
            key,
            attempt,
            error,
            delay,
        )
        metrics.delivered(item.target, "retrying")
        await self._record(
            execution_id,
            NotificationRetrying(
                event_id=event.id,
                event_type=str(event.type),
                channel=key,
                attempts=attempt,
                error=error,
                on=item.trigger,
                retry_at=retry_at.isoformat(),
                retry_after=result.retry_after,
            ),
        )
        return delay

    async def _give_up(
        self, item: Item, attempts: int, error: str, deadline: datetime | None
    ) -> float | None:
        why = f"deadline {deadline.isoformat()} passed" if deadline else f"{attempts} attempts"
        text = f"gave up ({why}); last error: {error}"
        log.error("%s of %s to %s: %s", item.event.type, item.event.execution_id, item.target.key, text)
        await self._record(
            item.event.execution_id,
            self._outcome(NotificationFailed, item, attempts, error=text, permanent=False),
        )
        return None

    async def _finish(self, item: Item, record: NotificationSent) -> None:
        self.sent.put(item.identity, record)
        await self._record(item.event.execution_id, record)

    @staticmethod
    def _thread_fields(thread: Thread | None) -> dict[str, str]:
        if thread is None:
            return {}
        out = {"thread_ts": thread.ts}
        if thread.slack_channel:
            out["slack_channel"] = thread.slack_channel
        return out

    def _outcome(
        self,
        model: type[NotificationSent] | type[NotificationFailed],
        item: Item,
        attempts: int,
        *,
        receipt: Receipt | None = None,
        error: str | None = None,
        **extra: Any,
    ) -> Any:
        """The notification.sent / notification.failed record; optional keys only when they
        say something."""
        receipt = receipt or Receipt()
        optional: dict[str, Any] = {"on": item.trigger}
        if receipt.slack_channel:
            optional["slack_channel"] = receipt.slack_channel
        if receipt.thread_ts:
            optional["thread_ts"] = receipt.thread_ts
        if receipt.note:
            optional["note"] = receipt.note
        optional.update({k: v for k, v in extra.items() if v is not None})
        return model(
            event_id=item.event.id,
            event_type=str(item.event.type),
            channel=item.target.key,
            attempts=attempts,
            ts=receipt.ts,
            error=error,
            **optional,
        )

    async def _find(self, item: Item, intent: NotificationSending) -> Receipt | None:
        """Whether the message of an unanswered attempt went out: Slack is asked (message
        metadata); email and webhooks cannot be asked, they are sent again (same Message-ID,
        same Idempotency-Key)."""
        if not isinstance(item.target, SlackDestination) or self.slack is None:
            return None
        since = (_parse_time(intent.at) or self.clock()).timestamp()
        channel = intent.slack_channel or item.target.channel
        try:
            return await self.slack.find(channel, self._metadata(item), since, thread_ts=intent.thread_ts)
        except DeliveryError as exc:
            # Unknown whether it went out: do not send blindly, look again later.
            log.warning("looking up %s in Slack failed: %s", item.identity, exc)
            raise

    @staticmethod
    def _metadata(item: Item) -> dict[str, str]:
        return {
            "event_id": item.event.id,
            "channel": item.target.key,
            "execution_id": item.event.execution_id,
        }

    async def _ledger(self, execution_id: str) -> Ledger:
        """What the record says: the execution's notification events, then the outcomes
        published but not yet appended by the coordinator."""
        events = [e for e, _ in await nats_bus.read_execution(self.bus, execution_id)]
        ledger = Ledger()
        for event in events:
            if event.type in NOTIFICATION_TYPES:
                ledger.record(event.payload)
        for published in await read_outcomes(self.bus, execution_id):
            ledger.add(published.type, published.data)
        return ledger

    def _sender(self, item: Item, thread: Thread | None) -> Callable[[], Awaitable[Receipt]]:
        event, summary, target = item.event, item.summary, item.target
        if item.step is not None:
            return step_notify.sender(self, item, thread)
        if isinstance(target, SlackDestination):
            slack = self.slack
            text, blocks = render.slack_text(summary), render.slack_blocks(summary)
            metadata = self._metadata(item)

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
                    metadata=metadata,
                )

            return to_slack
        if isinstance(target, EmailDestination):
            email = self.email
            link = approval_mail.decision_link(summary, target, self.config)
            text, html = approval_mail.with_link(render.email_text(summary), render.email_html(summary), link)
            message = build_message(
                sender=self.config.notify_from,
                to=target.to,
                cc=target.cc,
                subject=render.email_subject(summary),
                text=text,
                html=html,
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

    async def _record(self, execution_id: str, record: Any) -> None:
        """Publish a record for the coordinator to append; raises if NATS will not take it."""
        type_ = record.TYPE.value
        published = StepOutcome(execution_id=execution_id, type=type_, data=record.dump())
        headers = {"Nats-Msg-Id": message_id(record.event_id, record.channel, type_, record.attempts)}
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


def _parse_time(text: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(text) if text else None
    except ValueError:
        return None


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
    """One event, start to end (prepare and deliver)."""
    event = await _read(msg)
    if event is None:
        return
    try:
        plan = await notifier.prepare(event)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("notifying %s of %s failed; it will be redelivered", event.type, event.execution_id)
        with contextlib.suppress(Exception):
            await msg.nak(delay=2.0)
        return
    await _deliver(notifier, msg, event, plan)


async def _read(msg: Msg) -> Event | None:
    try:
        return Event.from_json(msg.data)
    except ValidationError as exc:
        log.error("dropping unreadable event on %s: %s", msg.subject, exc.errors()[0]["msg"])
        await msg.term()
        return None


async def _deliver(notifier: Notifier, msg: Msg, event: Event, plan: Plan) -> None:
    try:
        wait = await notifier.deliver(plan)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("notifying %s of %s failed; it will be redelivered", event.type, event.execution_id)
        with contextlib.suppress(Exception):
            await msg.nak(delay=2.0)
        return
    if wait is None:
        await msg.ack()
    else:
        # Some channel waits for a retry: JetStream hands the event back then (a restarted
        # notifier also finds `retry_at` in the record and waits for it).
        await msg.nak(delay=wait)


class InOrder:
    """The feed's handler: one execution's events are prepared in order (so a later message of a
    thread knows the earlier ones), then every channel is delivered on its own: a slow or
    failing channel holds back neither the other channels nor the next events."""

    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier
        self.chains: dict[str, asyncio.Future[None]] = {}

    async def __call__(self, msg: Msg) -> None:
        execution_id = msg.subject.rsplit(".", 1)[-1]
        # Log lines name the execution; deliveries are spans in its trace.
        with logs.bound(execution_id), tracing.within(carrier=msg.headers):
            await self._handle(msg, execution_id)

    async def _handle(self, msg: Msg, execution_id: str) -> None:
        previous = self.chains.get(execution_id)
        mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.chains[execution_id] = mine
        try:
            if previous is not None:
                await asyncio.wait([previous])
            event = await _read(msg)
            if event is None:
                return
            try:
                plan = await self.notifier.prepare(event)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("notifying %s of %s failed; it will be redelivered", event.type, execution_id)
                with contextlib.suppress(Exception):
                    await msg.nak(delay=2.0)
                return
        finally:
            mine.set_result(None)
            if self.chains.get(execution_id) is mine:
                del self.chains[execution_id]
        await _deliver(self.notifier, msg, event, plan)


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
    bus = await nats_bus.connect(
        nats_url, namespace=config.namespace, replicas=config.stream_replicas, name=f"rb-notifier-{name}"
    )
    if health is not None:
        watch_bus(health, bus)
    slack = (
        SlackSender(config.slack_token, config.slack_base_url, timeout=config.send_timeout)
        if config.slack_token or config.slack_base_url
        else None
    )
    email = EmailSender(config.smtp, config.notify_from) if config.smtp else None
    webhook = WebhookSender(timeout=config.send_timeout)
    step_webhook = WebhookSender(
        timeout=config.send_timeout, transport=EgressTransport(EgressPolicy.parse(config.egress_allow))
    )
    try:
        await nats_bus.patiently(lambda: ensure_consumer(bus, config, name), f"consumer {name}")
        claims = Claims(bus, config.claim_lease)
        await nats_bus.patiently(claims.bucket, "claims bucket")
        notifier = Notifier(
            bus, config, slack=slack, email=email, webhook=webhook, step_webhook=step_webhook, claims=claims
        )
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
        await step_webhook.close()
        with contextlib.suppress(Exception):
            await bus.close()
