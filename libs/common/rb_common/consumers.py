"""Durable consumers: configuration, binding, and the push consumer the coordinator uses."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from rb_common.bus import Bus, patiently

log = logging.getLogger(__name__)

Handler = Callable[[Msg], Awaitable[None]]


def durable_config(
    name: str,
    filter_subject: str | Sequence[str],
    *,
    ack_wait: float = 30.0,
    max_deliver: int = -1,
    backoff: list[float] | None = None,
    max_ack_pending: int = 1000,
    deliver: DeliverPolicy = DeliverPolicy.ALL,
    description: str | None = None,
) -> ConsumerConfig:
    """Every durable consumer of rb is built here: explicit acks, and what differs by consumer
    (the coordinator's push consumers, the workers', the recorder's, the notifier's)."""
    subjects = [filter_subject] if isinstance(filter_subject, str) else list(filter_subject)
    config = ConsumerConfig(
        durable_name=name,
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=deliver,
        ack_wait=ack_wait,
        max_deliver=max_deliver,
        backoff=backoff,
        max_ack_pending=max_ack_pending,
        description=description,
    )
    if len(subjects) == 1:
        config.filter_subject = subjects[0]
    else:
        config.filter_subjects = subjects  # needs nats-server >= 2.10
    return config


async def _handle(handler: Handler, msg: Msg) -> None:
    """Run the handler; on any error the message is NAKed to come back a second later."""
    try:
        await handler(msg)
    except Exception:
        log.exception("handler failed for %s; message will be redelivered", msg.subject)
        try:
            await msg.nak(delay=1.0)
        except Exception:
            log.debug("nak failed", exc_info=True)


async def consume_push(
    bus: Bus, stream: str, config: ConsumerConfig, handler: Handler, stop: asyncio.Event
) -> None:
    """A durable push consumer shared by every replica through a queue group.

    The server pushes each message as soon as it is stored: no pull round trip per batch, which
    is most of the latency of a step. Each message is handled in its own task; max_ack_pending
    bounds how many are in flight."""
    assert config.durable_name
    config.deliver_subject = bus.names.deliver_subject(config.durable_name)
    config.deliver_group = config.durable_name
    config.flow_control = None
    await patiently(lambda: bus.js.add_consumer(stream, config), f"consumer {config.durable_name}")
    inflight: set[asyncio.Task[None]] = set()

    async def on_message(msg: Msg) -> None:
        task = asyncio.create_task(_handle(handler, msg))
        inflight.add(task)
        task.add_done_callback(inflight.discard)

    sub = await bus.nc.subscribe(config.deliver_subject, queue=config.deliver_group, cb=on_message)
    try:
        await stop.wait()
    finally:
        await sub.unsubscribe()
        if inflight:
            await asyncio.wait(inflight, timeout=10)
