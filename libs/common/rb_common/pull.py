"""A continuous pull consumer: pull requests kept open, messages handled as they arrive.

nats-py's `fetch()` sends two pull requests per call (a no-wait probe, then a long poll) and
returns batches; a worker looping on it pays both for every task of a chain. Here requests stay
outstanding for up to `capacity` messages, each message is handed to its own task the moment it
arrives, and the request credit is topped up as handlers finish, as the newer NATS clients'
`consume()` does.

Credit is tracked per request, each with a reply subject and a subscription of its own (the
server interleaves deliveries between outstanding requests, and newer servers deliver with the
message's own subject, so only the subscription tells which request a message answers): a
request is spent when its batch has been delivered,
ends when the server says it expired (408) or was refused (409), and is forgotten after its
deadline in case the server's word was lost (e.g. across a reconnect), so a lost request costs
at most `expires` seconds of idleness, never a stuck consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg

log = logging.getLogger(__name__)

Handler = Callable[[Msg], Coroutine[Any, Any, None]]

NO_MESSAGES = "404"
REQUEST_TIMEOUT = "408"
HEARTBEAT = "100"
EXPIRY_GRACE = 1.0  # the server's 408 normally ends a request; this is for when it was lost


@dataclass
class _Request:
    remaining: int
    deadline: float
    sub: Any = None


class PullFeed:
    def __init__(
        self,
        nc: Client,
        stream: str,
        durable: str,
        handler: Handler,
        *,
        capacity: int,
        expires: float = 5.0,
        heartbeat: float | None = None,
        drain: float = 0.0,
        on_beat: Callable[[], None] | None = None,
    ) -> None:
        """`heartbeat`: tell JetStream every so many seconds that a message still being handled
        is in progress (set it below the consumer's AckWait). `drain`: on stop, how long running
        handlers may go on before they are cancelled and their messages handed back (NAK).
        `on_beat`: called after every round of heartbeats (every tick): by then JetStream has
        heard of each message being handled within the last `heartbeat` seconds."""
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.nc = nc
        self.handler = handler
        self.capacity = capacity
        self.expires = expires
        self.api_subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self.inbox = nc.new_inbox()
        self.requests: dict[str, _Request] = {}  # by reply subject
        self._ended: set[Any] = set()  # subscriptions of ended requests, unsubscribed each tick
        self._next_request = 0
        self.stopping = False
        self.heartbeat = heartbeat
        self.drain = drain
        self.on_beat = on_beat
        # Each running handler's message and when JetStream last heard of it.
        self.inflight: dict[asyncio.Task[None], tuple[Msg, float]] = {}
        self._top_up_scheduled = False
        self.requested = 0  # pull requests sent

    @property
    def credit(self) -> int:
        return sum(request.remaining for request in self.requests.values())

    async def run(self, stop: asyncio.Event) -> None:
        tick = min(1.0, self.expires / 2, self.heartbeat or 1.0)
        try:
            while not stop.is_set():
                self._forget_expired()
                await self._unsubscribe_ended()
                await self._beat()
                if self.on_beat is not None:
                    try:
                        self.on_beat()
                    except Exception:
                        log.warning("on_beat failed", exc_info=True)
                await self._top_up()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=tick)
        finally:
            await self._stop(tick)

    async def _stop(self, tick: float) -> None:
        self.stopping = True  # from here on, arriving messages are handed back, not handled
        for request in list(self.requests.values()):
            self._end(request)
        self.requests.clear()
        for sub in list(self._ended):
            with contextlib.suppress(Exception):
                await sub.drain()
        self._ended.clear()
        running = set(self.inflight)
        deadline = time.monotonic() + self.drain
        while running and time.monotonic() < deadline:
            _, running = await asyncio.wait(running, timeout=min(tick, deadline - time.monotonic()))
            await self._beat()  # the drain may outlast AckWait
        messages = [self.inflight[task][0] for task in running if task in self.inflight]
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        # Handed back at once rather than after AckWait, oldest first: another consumer takes
        # them now, in order. (A message its handler acknowledged just before is not affected.)
        for msg in sorted(messages, key=_stream_seq):
            with contextlib.suppress(Exception):
                await msg.nak()

    async def _beat(self) -> None:
        """In-progress acks for handlers running longer than the heartbeat: AckWait only runs out
        when the process is gone, however long a step takes."""
        if self.heartbeat is None:
            return
        now = time.monotonic()
        for task, (msg, heard) in list(self.inflight.items()):
            if now - heard >= self.heartbeat and not task.done():
                self.inflight[task] = (msg, now)
                with contextlib.suppress(Exception):
                    await msg.in_progress()

    def _end(self, request: _Request) -> None:
        if request.sub is not None:
            self._ended.add(request.sub)

    async def _unsubscribe_ended(self) -> None:
        ended, self._ended = self._ended, set()
        for sub in ended:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _on_message(self, msg: Msg, reply: str) -> None:
        request = self.requests.get(reply)
        status = msg.headers.get("Status") if msg.headers else None
        if status is None:
            if request is not None:
                request.remaining -= 1
                if request.remaining <= 0:
                    del self.requests[reply]
                    self._end(request)
            if self.stopping or len(self.inflight) >= self.capacity:
                # Asked for before a stop, or by a request the feed had given up on.
                with contextlib.suppress(Exception):
                    await msg.nak()
                return
            task = asyncio.create_task(self.handler(msg))
            self.inflight[task] = (msg, time.monotonic())
            task.add_done_callback(self._finished)
            return
        if status == HEARTBEAT:
            return
        ended = self.requests.pop(reply, None)
        if ended is not None:
            self._end(ended)
        if status in (REQUEST_TIMEOUT, NO_MESSAGES):
            await self._top_up()  # a request ran its course: renew it at once
        else:
            # Refused (409: consumer deleted, leadership change...) or no responder (503): ask
            # again on the next tick rather than in a loop with the server.
            log.warning(
                "pull request ended with %s %s",
                status,
                msg.headers.get("Description", "") if msg.headers else "",
            )

    def _forget_expired(self) -> None:
        now = time.monotonic() - EXPIRY_GRACE
        for subject, request in list(self.requests.items()):
            if request.deadline < now:
                del self.requests[subject]
                self._end(request)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self.inflight.pop(task, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("handler failed", exc_info=task.exception())
        if not self._top_up_scheduled:
            self._top_up_scheduled = True
            asyncio.get_running_loop().call_soon(lambda: asyncio.ensure_future(self._top_up()))

    async def _top_up(self) -> None:
        """Ask for what the free capacity allows, once enough of it is free to be worth a
        request (a quarter), or at once when nothing at all is requested."""
        self._top_up_scheduled = False
        if self.stopping:
            return
        want = self.capacity - len(self.inflight) - self.credit
        if want <= 0 or (self.requests and want < max(1, self.capacity // 4)):
            return
        self._next_request += 1
        reply = f"{self.inbox}.{self._next_request}"
        request = _Request(remaining=want, deadline=time.monotonic() + self.expires)
        self.requests[reply] = request
        self.requested += 1
        payload = orjson.dumps({"batch": want, "expires": int(self.expires * 1e9)})
        try:

            async def on_message(msg: Msg) -> None:
                await self._on_message(msg, reply)

            request.sub = await self.nc.subscribe(reply, cb=on_message)
            if self.stopping or self.requests.get(reply) is not request:
                self._end(request)
                return
            await self.nc.publish(self.api_subject, payload, reply=reply)
        except Exception:
            if self.requests.pop(reply, None) is not None:
                self._end(request)
            log.warning("pull request failed; retrying", exc_info=True)


def _stream_seq(msg: Msg) -> int:
    try:
        return msg.metadata.sequence.stream
    except Exception:
        return 0
