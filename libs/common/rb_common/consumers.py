"""Durable consumers: configuration, binding, and the push consumer the coordinator uses."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from rb_common.bus import Bus

log = logging.getLogger(__name__)

Handler = Callable[[Msg], Awaitable[None]]


def durable_config(
    name: str,
    filter_subject: str,
    *,
    ack_wait: float = 30.0,
    max_deliver: int = -1,
    backoff: list[float] | None = None,
    max_ack_pending: int = 1000,
) -> ConsumerConfig:
    return ConsumerConfig(
        durable_name=name,
        filter_subject=filter_subject,
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        ack_wait=ack_wait,
        max_deliver=max_deliver,
        backoff=backoff,
        max_ack_pending=max_ack_pending,
    )


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
    await bus.js.add_consumer(stream, config)
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
