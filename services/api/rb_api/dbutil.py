"""Small helpers for the API's synchronous SQLAlchemy work: run it off the event loop, format times."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar

import anyio
import anyio.to_thread
from starlette.concurrency import run_in_threadpool

P = ParamSpec("P")
T = TypeVar("T")


async def in_thread(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run blocking database work in the thread pool."""
    return await run_in_threadpool(fn, *args, **kwargs)


class ThreadLane:
    """At most `threads` of the thread pool's threads at once for one kind of work: background
    reads that many requests start together (the long polls woken by a burst of ends) then queue
    here instead of ahead of every other request's work in the pool, and fewer threads contend
    with the event loop for the GIL. The limiter is made on first use, in the running loop."""

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self._limiter: anyio.CapacityLimiter | None = None

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.threads)
        return await anyio.to_thread.run_sync(fn, *args, limiter=self._limiter)


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(value: Any) -> str | None:
    """ISO 8601 with an offset; naive datetimes (SQLite) are UTC."""
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.isoformat()
    return str(value)
