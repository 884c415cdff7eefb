"""Executions whose end the recorder has committed, as it announces them: what long polls wait on.

The recorder publishes `<ns>.projected.<execution id>` (core NATS) once an execution's terminal
event is in its tables (rb_recorder.service.announcer). Each API process holds one subscription
on them all, opened at start, and wakes the long polls (rb_api.long_poll) waiting on that
execution. A request then costs no subscription, flush or unsubscribe of its own, and reads the
projection once more only when it has something to show. The announcement is a hint, not a
record: one lost to a reconnect is covered by the long poll's periodic re-read. The ids announced
in the last `REMEMBER_SECONDS` are remembered (bounded), so a long poll that starts after its
execution's announcement knows it has ended without a read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

from nats.aio.msg import Msg

from rb_api.accepted import KEEP_SECONDS, MAX_KEPT
from rb_common.bus import Bus

log = logging.getLogger(__name__)

# A long poll skips its first read for an id accepted here (rb_api.accepted) unless its end was
# announced: an announcement comes after the accept, so remembering it as long as an accepted id
# is kept covers every id still accepted (past REMEMBER_MAX ends in that time, the long poll's
# periodic re-read finds the end instead).
REMEMBER_SECONDS = KEEP_SECONDS
REMEMBER_MAX = 2 * MAX_KEPT


class Ended:
    """Waiters by execution id, woken by the recorder's announcements."""

    def __init__(
        self,
        remember_seconds: float = REMEMBER_SECONDS,
        remember_max: int = REMEMBER_MAX,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._waiting: dict[str, set[asyncio.Event]] = {}
        self._recent: OrderedDict[str, float] = OrderedDict()  # id -> monotonic time announced
        self._remember_seconds = remember_seconds
        self._remember_max = remember_max
        self._sub: Any = None
        self._retrying: asyncio.Task[None] | None = None
        self.announced = 0  # announcements received (tests, diagnostics)

    async def start(self, bus: Bus) -> None:
        """Subscribe to every announcement of the namespace (a core subscription: the client
        renews it after a reconnect). NATS not there: tried again in the background, and until
        then long polls answer at once."""
        try:
            await self._subscribe(bus)
        except Exception as exc:
            log.warning("cannot listen for projected ends yet (%s): long polls answer at once", exc)
            self._retrying = asyncio.create_task(self._retry(bus))

    async def _subscribe(self, bus: Bus) -> None:
        async def on_message(msg: Msg) -> None:
            self.announced += 1
            self.wake(msg.subject.rpartition(".")[2])

        self._sub = await bus.nc.subscribe(bus.names.all_of("projected"), cb=on_message)

    async def _retry(self, bus: Bus) -> None:
        pause = 0.5
        while self._sub is None:
            await asyncio.sleep(pause)
            pause = min(pause * 2, 10.0)
            with contextlib.suppress(Exception):
                await self._subscribe(bus)
        log.info("listening for projected ends")

    async def stop(self) -> None:
        if self._retrying is not None:
            self._retrying.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retrying
            self._retrying = None
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None

    @property
    def listening(self) -> bool:
        return self._sub is not None

    def wake(self, execution_id: str) -> None:
        now = self._clock()
        self._recent[execution_id] = now
        self._recent.move_to_end(execution_id)
        while self._recent and (
            len(self._recent) > self._remember_max
            or now - next(iter(self._recent.values())) > self._remember_seconds
        ):
            self._recent.popitem(last=False)
        for event in self._waiting.get(execution_id, ()):
            event.set()

    def announced_lately(self, execution_id: str) -> bool:
        """Whether the recorder announced `execution_id`'s end in the last `remember_seconds`
        (as far as this process heard: an announcement lost to a reconnect is not here)."""
        at = self._recent.get(execution_id)
        return at is not None and self._clock() - at <= self._remember_seconds

    @contextlib.contextmanager
    def watch(self, execution_id: str) -> Iterator[asyncio.Event]:
        """An event set when the recorder announces `execution_id`'s end; registered before the
        caller reads the projection, so an end committed in between is not missed."""
        event = asyncio.Event()
        self._waiting.setdefault(execution_id, set()).add(event)
        try:
            yield event
        finally:
            waiters = self._waiting.get(execution_id)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._waiting[execution_id]
