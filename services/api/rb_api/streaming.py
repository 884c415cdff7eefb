"""Server-Sent Events of one execution, live from its JetStream subject.

An ordered consumer on rb.exec.<id> from the first event; each event goes out as

    id: <event seq>
    event: <event type>
    data: <event json>

and the stream ends after the terminal event (after the last one stored: an execution whose failed
step was retried goes on after its first end). `Last-Event-ID: n` skips events up to seq n. While
the execution is quiet a `: keepalive` comment goes out every `keepalive_seconds`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import anyio
import nats.errors
from nats.aio.msg import Msg
from nats.js.api import DeliverPolicy

from rb_api.deps import Services
from rb_common.events import TERMINAL_EVENTS, Event, EventType

log = logging.getLogger("rb_api")

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "Connection": "keep-alive"}


def parse_last_event_id(value: str | None) -> int:
    try:
        return max(int((value or "").strip()), 0)
    except ValueError:
        return 0


def format_event(event: Event) -> bytes:
    return f"id: {event.seq}\nevent: {event.type.value}\ndata: {event.to_json()}\n\n".encode()


class ExecutionStream:
    """An open subscription to one execution's subject; `first` is its first message, if any."""

    def __init__(self, sub: Any, first: Msg | None) -> None:
        self.sub = sub
        self.first = first

    @classmethod
    async def open(cls, svc: Services, execution_id: str, wait: float) -> ExecutionStream:
        """Subscribe; wait up to `wait` seconds for the first message (0: do not wait)."""
        sub = await svc.bus.js.subscribe(
            svc.bus.names.exec_subject(execution_id), ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
        )
        first: Msg | None = None
        if wait > 0:
            try:
                first = await sub.next_msg(timeout=wait)
            except nats.errors.TimeoutError:
                first = None
            except BaseException:
                await _close(sub)
                raise
        return cls(sub, first)

    async def close(self) -> None:
        await _close(self.sub)

    async def events(self, last_event_id: int, keepalive: float) -> AsyncIterator[bytes]:
        """SSE frames until the terminal event (or the connection to NATS is gone)."""
        try:
            yield b"retry: 2000\n\n"
            pending = self.first
            # After the terminal event, what is already stored still goes out (a retried
            # execution goes on after its first end); then the stream ends.
            ended = False
            while True:
                if pending is None:
                    try:
                        pending = await self.sub.next_msg(timeout=keepalive)
                    except nats.errors.TimeoutError:
                        yield b": keepalive\n\n"
                        continue
                    except (nats.errors.ConnectionClosedError, nats.errors.BadSubscriptionError):
                        return
                msg, pending = pending, None
                try:
                    event = Event.from_json(msg.data)
                except Exception:
                    log.warning("skipping a malformed message on %s", msg.subject)
                    continue
                if event.seq > last_event_id:
                    yield format_event(event)
                if event.type in TERMINAL_EVENTS:
                    ended = True
                elif event.type == EventType.STEP_RETRY_REQUESTED:
                    ended = False  # a failed step is retried: the execution runs again
                if ended and _pending(msg) == 0:
                    return
        finally:
            await self.close()


def _pending(msg: Msg) -> int:
    try:
        return int(msg.metadata.num_pending or 0)
    except Exception:
        return 0


async def _close(sub: Any) -> None:
    # Runs while the response task is being cancelled (client gone): shield the unsubscribe.
    with anyio.CancelScope(shield=True):
        with contextlib.suppress(Exception):
            await asyncio.wait_for(sub.unsubscribe(), 2.0)
