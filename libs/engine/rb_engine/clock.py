"""Time for the runner: the real clock, or a fake one that `rb test` advances instantly."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...

    async def sleep(self, seconds: float) -> None: ...

    def wait_timeout(self, until: datetime, idle: bool) -> float | None:
        """How long a runner may wait for news before a timer due at `until` must fire
        (None: wait for news, the timer is not due before it); `idle`: nothing is running."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    def wait_timeout(self, until: datetime, idle: bool) -> float | None:
        return max(0.0, (until - self.now()).total_seconds())


class FakeClock:
    """Virtual time: sleeping moves the clock forward and returns at once."""

    def __init__(self, start: datetime) -> None:
        self._now = start

    def now(self) -> datetime:
        return self._now

    async def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._now += timedelta(seconds=seconds)
        await asyncio.sleep(0)

    def wait_timeout(self, until: datetime, idle: bool) -> float | None:
        """Virtual time moves with what runs (a step's sleep); when nothing runs, it jumps to
        the timer. A timer a step's sleep passed fires before that step's outcome."""
        if until <= self._now:
            return 0.0
        if idle:
            self._now = until
            return 0.0
        return None
