"""Small helpers for the API's synchronous SQLAlchemy work: run it off the event loop, format times."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar

from starlette.concurrency import run_in_threadpool

P = ParamSpec("P")
T = TypeVar("T")


async def in_thread(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run blocking database work in the thread pool."""
    return await run_in_threadpool(fn, *args, **kwargs)


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
