"""admission.Reads: triggers of one runbook share registry reads, but only a read that started
after they arrived, so each is judged on the registry as of after its arrival."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from rb_executor.service.admission import Entry, Reads


class Registry:
    """The registry's value per runbook, read in round trips that the test lets finish."""

    def __init__(self) -> None:
        self.value: dict[str, Any] = {"status": "APPROVED", "revision": 1}
        self.reads = 0
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.error: Exception | None = None

    async def read(self, runbook_id: str) -> Entry:
        self.reads += 1
        seen = dict(self.value)  # the value as of the start of the round trip
        self.started.set()
        await self.release.wait()
        self.release.clear()
        self.started.clear()
        if self.error is not None:
            raise self.error
        return seen


async def test_callers_before_a_read_starts_share_it() -> None:
    registry = Registry()
    reads = Reads(registry.read)
    callers = [asyncio.ensure_future(reads.get("rb")) for _ in range(5)]
    await registry.started.wait()
    registry.release.set()
    assert [await c for c in callers] == [{"status": "APPROVED", "revision": 1}] * 5
    assert registry.reads == 1


async def test_a_caller_during_a_read_waits_for_the_next_one() -> None:
    registry = Registry()
    reads = Reads(registry.read)
    early = asyncio.ensure_future(reads.get("rb"))
    await registry.started.wait()  # the read is under way with the APPROVED value
    registry.value = {"status": "DEPRECATED", "revision": 1}  # deprecated meanwhile
    late = [asyncio.ensure_future(reads.get("rb")) for _ in range(3)]
    await asyncio.sleep(0)
    registry.release.set()
    assert (await early)["status"] == "APPROVED"
    await registry.started.wait()  # the second read, started after the late callers came
    registry.release.set()
    assert [(await c)["status"] for c in late] == ["DEPRECATED"] * 3
    assert registry.reads == 2
    other = asyncio.ensure_future(reads.get("other"))  # another runbook reads on its own
    await registry.started.wait()
    registry.release.set()
    assert (await other)["status"] == "DEPRECATED" and registry.reads == 3


async def test_an_error_reaches_every_caller_of_the_read_and_the_next_read_is_fresh() -> None:
    registry = Registry()
    reads = Reads(registry.read)
    registry.error = ConnectionError("no responders")
    callers = [asyncio.ensure_future(reads.get("rb")) for _ in range(2)]
    await registry.started.wait()
    registry.release.set()
    for caller in callers:
        with pytest.raises(ConnectionError):
            await caller
    registry.error = None
    again = asyncio.ensure_future(reads.get("rb"))
    await registry.started.wait()
    registry.release.set()
    assert (await again)["status"] == "APPROVED" and registry.reads == 2
