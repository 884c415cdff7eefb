"""The recorder service: a durable pull consumer on RB_EVENTS feeding `Recorder.apply`.

Each message is acked only after its transaction committed, so a crash between commit and ack
means a redelivery, which `apply` recognises as a duplicate. Transient database errors and
sequence gaps are NAKed with a delay; unreadable messages are terminated (they can never apply).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from pydantic import ValidationError
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from rb_common import logs
from rb_common.bus import Bus, connect, patiently
from rb_common.consumers import durable_config
from rb_common.events import TERMINAL_EVENTS, Event
from rb_common.health import Health, watch_bus
from rb_common.settings import Settings
from rb_recorder import metrics
from rb_store.db import database_url, make_engine, migrate_when_reachable, select_one
from rb_store.recorder import Recorder, SequenceGap

log = logging.getLogger(__name__)

ACK_WAIT_SECONDS = 30.0
MAX_ACK_PENDING = 1000


def gap_delay(deliveries: int) -> float:
    """Redelivery delay for an event ahead of its predecessor: short, the gap fills fast."""
    return min(2.0, 0.1 * 2 ** max(0, deliveries - 1))


def error_delay(deliveries: int) -> float:
    """Redelivery delay after a failed apply (database down, ...): exponential, capped."""
    return min(30.0, 0.5 * 2 ** max(0, deliveries - 1))


def consumer_config(consumer: str, subjects: Sequence[str], deliver: str = "all") -> ConsumerConfig:
    return durable_config(
        consumer,
        subjects,
        ack_wait=ACK_WAIT_SECONDS,
        max_ack_pending=MAX_ACK_PENDING,
        deliver=DeliverPolicy.NEW if deliver == "new" else DeliverPolicy.ALL,
        description="rb recorder: events -> event store + projections",
    )


async def ensure_consumer(
    bus: Bus, recorder: Recorder, consumer: str, subjects: Sequence[str], deliver: str = "all"
) -> JetStreamContext.PullSubscription:
    """Bind to the durable consumer, creating it if needed.

    If the consumer's ack floor is ahead of what this database has applied (a fresh or restored
    database behind an old consumer), the consumer is recreated to deliver the stream from the
    start: applying is idempotent, and otherwise those events would never reach this database.
    """
    js, stream = bus.js, bus.names.events_stream
    try:
        info = await js.consumer_info(stream, consumer)
    except NotFoundError:
        info = None
    if info is not None:
        applied = await asyncio.to_thread(recorder.offset)
        floor = info.ack_floor.stream_seq if info.ack_floor else 0
        if floor > (applied or 0) and deliver == "all":
            log.warning(
                "consumer %s has acked up to stream seq %d but this database has applied %s; "
                "replaying %s from the start",
                consumer,
                floor,
                applied,
                stream,
            )
            await js.delete_consumer(stream, consumer)
            info = None
    if info is None:
        await js.add_consumer(stream, consumer_config(consumer, subjects, deliver))
        log.info("created durable consumer %s on %s (%s)", consumer, stream, ", ".join(subjects))
    return await js.pull_subscribe_bind(durable=consumer, stream=stream)


async def handle_message(msg: Msg, recorder: Recorder, blocked: set[str]) -> None:
    """Apply one message and ack, NAK or terminate it. `blocked` holds executions with a NAKed
    event in the current batch: their later events cannot apply before it, so they wait too."""
    try:
        event = Event.from_json(msg.data)
    except ValidationError as exc:
        log.error("unreadable event on %s, terminating it: %s", msg.subject, exc.errors()[0]["msg"])
        await msg.term()
        return
    with logs.bound(event.execution_id):  # the log lines about it name its execution
        await _apply(msg, event, recorder, blocked)


async def _apply(msg: Msg, event: Event, recorder: Recorder, blocked: set[str]) -> None:
    metadata = msg.metadata
    deliveries = metadata.num_delivered or 1
    if event.execution_id in blocked:
        await msg.nak(delay=gap_delay(deliveries))
        return
    try:
        result = await asyncio.to_thread(recorder.apply, event, metadata.sequence.stream)
    except SequenceGap as gap:
        blocked.add(event.execution_id)
        log.info("%s; redelivering later (delivery %d)", gap, deliveries)
        await msg.nak(delay=gap_delay(deliveries))
        return
    except SQLAlchemyError as exc:
        blocked.add(event.execution_id)
        log.warning(
            "database error recording %s seq %d (delivery %d), retrying: %s",
            event.execution_id,
            event.seq,
            deliveries,
            exc.__class__.__name__ + ": " + str(exc).splitlines()[0],
        )
        await msg.nak(delay=error_delay(deliveries))
        return
    except Exception:
        blocked.add(event.execution_id)
        log.exception("failed to record %s seq %d (delivery %d)", event.execution_id, event.seq, deliveries)
        await msg.nak(delay=error_delay(deliveries))
        return
    log.debug("%s seq %d %s: %s", event.execution_id, event.seq, event.type.value, result.value)
    metrics.projected(msg, event, result.value)
    await msg.ack()


# Told of each execution end once it is committed (the long polls of the API wait for it).
Announce = Callable[[Event], Awaitable[None]]


def announcer(bus: Bus) -> Announce:
    """Publish an end, committed, on `projected_subject` (core NATS: nothing stored; a lost one
    costs a waiting client at most the API's recheck interval)."""

    async def announce(event: Event) -> None:
        with contextlib.suppress(nats.errors.Error):
            await bus.nc.publish(bus.names.projected_subject(event.execution_id), event.type.value.encode())

    return announce


async def consume(
    sub: JetStreamContext.PullSubscription,
    recorder: Recorder,
    stop: asyncio.Event,
    *,
    batch_size: int = 100,
    fetch_timeout: float = 1.0,
    announce: Announce | None = None,
) -> None:
    while not stop.is_set():
        try:
            msgs = await sub.fetch(batch_size, timeout=fetch_timeout)
        except TimeoutError:  # nothing to fetch (nats raises both its own and asyncio's)
            continue
        except nats.errors.Error as exc:
            log.warning("fetch from the events stream failed, retrying: %r", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
            continue
        try:
            await handle_batch(msgs, recorder, announce)
        except nats.errors.Error as exc:
            # Ack/NAK lost (connection trouble): the messages come back after the ack wait.
            log.warning("could not acknowledge messages on the events stream: %r", exc)


async def handle_batch(msgs: Sequence[Msg], recorder: Recorder, announce: Announce | None = None) -> None:
    """Apply a fetched batch in one transaction, then announce the ends it committed and ack, NAK
    or terminate each message."""
    readable: list[tuple[Msg, Event]] = []
    for msg in msgs:
        try:
            readable.append((msg, Event.from_json(msg.data)))
        except ValidationError as exc:
            log.error("unreadable event on %s, terminating it: %s", msg.subject, exc.errors()[0]["msg"])
            await msg.term()
    if not readable:
        return
    items = [(event, msg.metadata.sequence.stream) for msg, event in readable]
    try:
        results = await asyncio.to_thread(recorder.apply_batch, items)
    except SQLAlchemyError as exc:
        log.warning(
            "database error recording a batch of %d, retrying: %s",
            len(items),
            exc.__class__.__name__ + ": " + str(exc).splitlines()[0],
        )
        for msg, _ in readable:
            await msg.nak(delay=error_delay(msg.metadata.num_delivered or 1))
        return
    if announce is not None:
        for (_, event), result in zip(readable, results, strict=True):
            if event.type in TERMINAL_EVENTS and not isinstance(result, SequenceGap):
                await announce(event)
    for (msg, event), result in zip(readable, results, strict=True):
        with logs.bound(event.execution_id):
            if isinstance(result, SequenceGap):
                log.info("%s; redelivering later", result)
                await msg.nak(delay=gap_delay(msg.metadata.num_delivered or 1))
            else:
                log.debug("%s seq %d %s: %s", event.execution_id, event.seq, event.type.value, result.value)
                metrics.projected(msg, event, result.value)
                await msg.ack()


async def run_recorder(
    settings: Settings,
    stop: asyncio.Event,
    *,
    consumer: str | None = None,
    subjects: Sequence[str] | None = None,
    batch_size: int = 100,
    fetch_timeout: float = 1.0,
    engine: Engine | None = None,
    health: Health | None = None,
) -> None:
    """Record every execution event into the database until `stop` is set.

    `consumer` and `subjects` exist for tests (a private durable consumer on their own
    executions); production uses the shared durable "recorder" on every execution subject.
    `engine` defaults to one built from `settings` (and disposed at the end).
    """
    consumer = consumer or settings.recorder_consumer
    own_engine = engine is None
    db = engine if engine is not None else make_engine(database_url(settings))
    try:
        if not await migrate_when_reachable(db, stop):
            return
        recorder = Recorder(db, consumer=consumer)
        bus = await connect(settings.nats_url, namespace=settings.namespace, replicas=settings.stream_replicas, name="rb-recorder")
        if health is not None:
            health.add("database", lambda: asyncio.to_thread(select_one, db))
            watch_bus(health, bus)
        try:
            sub = await patiently(
                lambda: ensure_consumer(
                    bus, recorder, consumer, subjects or [bus.names.all_of("exec")], deliver=settings.recorder_deliver
                ),
                f"consumer {consumer}",
            )
            log.info("recorder consuming %s as %s", bus.names.events_stream, consumer)
            await consume(
                sub, recorder, stop, batch_size=batch_size, fetch_timeout=fetch_timeout, announce=announcer(bus)
            )
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()
        finally:
            with contextlib.suppress(nats.errors.Error):
                await bus.close()
        log.info("recorder stopped")
    finally:
        if own_engine:
            db.dispose()
