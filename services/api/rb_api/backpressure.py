"""The execute route's 429: refuse work the executors cannot take (issue 15, "fair and bounded").

The backlog is what waits for a slot (the slot table's queue, rb_common.slots_bucket) plus the
triggers the executors have not admitted yet (their durable consumer's pending and unacknowledged
messages). At `RB_MAX_QUEUED_EXECUTIONS` or more, the route answers 429 problem+json with
`Retry-After: RB_QUEUE_RETRY_AFTER`. The figure is read at most every `TTL` seconds per API
process (one KV get and one consumer info, in the background: no request waits for it), shared
by the requests of that time, never a scan per request. Each request let through counts in the
figure until the next read (which adds those whose trigger is not published yet), so a burst
within a figure's lifetime does not overshoot the bound; a figure at the bound only by those is
read again before it refuses. The executors refuse (and record) what slips past several API
replicas' figures.
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
    """Executions waiting for a slot plus triggers not yet admitted, counted so that none is
    missed: the triggers first (stored and not delivered, or delivered and not acknowledged: an
    executor acknowledges a trigger once it has started or queued it), then the table. A trigger
    admitted between the two reads, or queued and not yet acknowledged, counts twice; the
    figure errs high for the time of one admission, never low (it would let through what an
    executor then refuses after the 202)."""
    try:
        info = await bus.js.consumer_info(bus.names.triggers_stream, TRIGGER_CONSUMER)
    except NotFoundError:
        held = 0  # no executor has started yet
    else:
        held = int(info.num_pending or 0) + int(info.num_ack_pending or 0)
    return held + await queue_depth(bus)


class QueueGate:
    """One API process's cached backlog figure, read again in the background when stale."""

    def __init__(self, ttl: float = TTL) -> None:
        self.ttl = ttl
        self._depth = 0
        self._read_value = 0  # the figure as the last read left it
        self._unpublished = 0  # let through, trigger not yet published (or the request failed)
        self._read_at: float | None = None
        self._reading = asyncio.Lock()  # one read at a time on a request's path
        self._refreshing: asyncio.Task[None] | None = None

    async def refresh(self, bus: Bus) -> None:
        """Read the backlog now."""
        try:
            read = await backlog(bus)
        except Exception as exc:  # a figure that cannot be read refuses nothing on it
            log.warning("backlog unknown (%s): not refusing on it", exc)
            read = 0
        # Requests let through whose trigger is not published yet: the read cannot have them.
        self._depth = self._read_value = read + self._unpublished
        self._read_at = time.monotonic()

    async def depth(self, bus: Bus) -> int:
        """The figure; a stale one is read again in the background (no request waits for NATS:
        the figure it gets is at most a read's time older), the first one at once."""
        if self._read_at is None:
            async with self._reading:
                if self._read_at is None:
                    await self.refresh(bus)
        elif time.monotonic() - self._read_at >= self.ttl and self._refreshing is None:
            self._refreshing = asyncio.create_task(self.refresh(bus))
            self._refreshing.add_done_callback(self._refreshed)
        return self._depth

    def _refreshed(self, _task: asyncio.Task[None]) -> None:
        self._refreshing = None

    async def check(self, bus: Bus, bound: int, retry_after: int) -> None:
        """Raise the 429 when the backlog is at its bound; otherwise count the request in it
        until the next read (call `settled()` once its trigger is published, or it failed)."""
        depth = await self.depth(bus)
        if depth >= bound and depth > self._read_value:
            # At the bound only by the requests let through since the last read: read again
            # before refusing (the executors may have started them; running ones do not wait).
            async with self._reading:
                if self._depth > self._read_value:
                    await self.refresh(bus)
            depth = self._depth
        if depth < bound:
            self._depth += 1
            self._unpublished += 1
            return
        raise ProblemError(
            429,
            f"{depth} executions wait for a slot (the bound is {bound}); try again later",
            slug="queue-full",
            title="Too many executions waiting",
            headers={"Retry-After": str(retry_after)},
        )

    def settled(self) -> None:
        """A request `check` let through has published its trigger, or failed."""
        self._unpublished -= 1
