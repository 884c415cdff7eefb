"""The execute route's 429: refuse work the executors cannot take (issue 15, "fair and bounded").

The backlog is what waits for a slot (the slot table's queue, rb_common.slots_bucket) plus the
triggers the executors have not taken yet (their durable consumer's pending and unacknowledged
messages). At `RB_MAX_QUEUED_EXECUTIONS` or more, the route answers 429 problem+json with
`Retry-After: RB_QUEUE_RETRY_AFTER`. The figure is read at most every `TTL` seconds per API
process (one KV get and one consumer info), shared by the requests of that time, never a scan
per request; the executors refuse (and record) what slips past a stale figure.
"""

from __future__ import annotations

import asyncio
import logging
import time

from nats.errors import Error as NatsError
from nats.js.errors import NotFoundError

from rb_api.problems import ProblemError
from rb_common.bus import Bus
from rb_common.slots_bucket import queue_depth

log = logging.getLogger(__name__)

TTL = 0.25  # seconds a backlog figure is used
TRIGGER_CONSUMER = "executor-triggers-q"  # the executors' durable on rb.trigger.* (rb_executor)


async def backlog(bus: Bus) -> int:
    """Executions waiting for a slot plus triggers not yet admitted."""
    queued = await queue_depth(bus)
    try:
        info = await bus.js.consumer_info(bus.names.triggers_stream, TRIGGER_CONSUMER)
    except NotFoundError:
        return queued  # no executor has started yet
    return queued + int(info.num_pending or 0) + int(info.num_ack_pending or 0)


class QueueGate:
    """One API process's cached backlog figure."""

    def __init__(self) -> None:
        self._depth = 0
        self._read_at = -TTL
        self._lock = asyncio.Lock()

    async def depth(self, bus: Bus) -> int:
        if time.monotonic() - self._read_at < TTL:
            return self._depth
        async with self._lock:
            if time.monotonic() - self._read_at >= TTL:
                try:
                    self._depth = await backlog(bus)
                except (NatsError, TimeoutError, OSError) as exc:
                    log.warning("backlog unknown (%s): not refusing on it", exc)
                    self._depth = 0
                self._read_at = time.monotonic()
        return self._depth

    async def check(self, bus: Bus, bound: int, retry_after: int) -> None:
        """Raise the 429 when the backlog is at its bound."""
        depth = await self.depth(bus)
        if depth >= bound:
            raise ProblemError(
                429,
                f"{depth} executions wait for a slot (the bound is {bound}); try again later",
                slug="queue-full",
                title="Too many executions waiting",
                headers={"Retry-After": str(retry_after)},
            )
