"""The execute route's 429: refuse work the executors cannot take (issue 15, "fair and bounded").

The backlog is what waits for a slot (the slot table's queue, rb_common.slots_bucket) plus the
triggers the executors have not taken yet (their durable consumer's pending and unacknowledged
messages). At `RB_MAX_QUEUED_EXECUTIONS` or more, the route answers 429 problem+json with
`Retry-After: RB_QUEUE_RETRY_AFTER`. The figure is read at most every `TTL` seconds per API
process (one KV get and one consumer info, in the background: no request waits for it), shared
by the requests of that time, never a scan
per request; the executors refuse (and record) what slips past a stale figure.
"""

from __future__ import annotations

import asyncio
import logging
import time

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
    """One API process's cached backlog figure, read again in the background when stale."""

    def __init__(self, ttl: float = TTL) -> None:
        self.ttl = ttl
        self._depth = 0
        self._read_at: float | None = None
        self._first = asyncio.Lock()
        self._refreshing: asyncio.Task[None] | None = None

    async def refresh(self, bus: Bus) -> None:
        """Read the backlog now."""
        try:
            self._depth = await backlog(bus)
        except Exception as exc:  # a figure that cannot be read refuses nothing on it
            log.warning("backlog unknown (%s): not refusing on it", exc)
            self._depth = 0
        self._read_at = time.monotonic()

    async def depth(self, bus: Bus) -> int:
        """The figure; a stale one is read again in the background (no request waits for NATS:
        the figure it gets is at most a read's time older), the first one at once."""
        if self._read_at is None:
            async with self._first:
                if self._read_at is None:
                    await self.refresh(bus)
        elif time.monotonic() - self._read_at >= self.ttl and self._refreshing is None:
            self._refreshing = asyncio.create_task(self.refresh(bus))
            self._refreshing.add_done_callback(self._refreshed)
        return self._depth

    def _refreshed(self, _task: asyncio.Task[None]) -> None:
        self._refreshing = None

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
