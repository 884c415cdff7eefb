"""rb_api.ended: the recorder's announcements wake the long polls waiting on that execution only."""

from __future__ import annotations

import asyncio

from rb_api.ended import Ended
from rb_common.memory_bus import memory_bus


async def test_an_announcement_wakes_the_waiters_of_its_execution_only() -> None:
    ended = Ended()
    with ended.watch("a") as first, ended.watch("a") as second, ended.watch("b") as other:
        ended.wake("a")
        await asyncio.wait_for(asyncio.gather(first.wait(), second.wait()), 1)
        assert not other.is_set()
        ended.wake("unknown")  # nobody waits: nothing happens
    assert ended._waiting == {}  # every watch is forgotten when it ends


async def test_a_watch_ended_by_an_error_is_forgotten_too() -> None:
    ended = Ended()
    try:
        with ended.watch("a"):
            raise RuntimeError("the request failed")
    except RuntimeError:
        pass
    assert ended._waiting == {}
    assert not ended.listening


async def test_it_listens_once_the_bus_lets_it_and_wakes_on_an_announcement() -> None:
    """NATS closed at start: not listening (long polls answer at once), and tried again in the
    background; the in-memory twin's core publish then reaches the waiter."""
    bus = memory_bus()
    bus.js.closed = True  # type: ignore[attr-defined]
    ended = Ended()
    await ended.start(bus)
    assert not ended.listening
    bus.js.closed = False  # type: ignore[attr-defined]
    for _ in range(100):
        if ended.listening:
            break
        await asyncio.sleep(0.05)
    assert ended.listening
    with ended.watch("e1") as woken:
        await bus.nc.publish(bus.names.projected_subject("e1"), b"execution.succeeded")
        await asyncio.wait_for(woken.wait(), 1)
    assert ended.announced == 1
    await ended.stop()
    assert not ended.listening


def test_it_remembers_announced_ends_for_a_while_and_only_so_many() -> None:
    """A long poll that starts after the announcement learns the end from here (rb_api.long_poll
    skips its first read for an execution accepted a moment ago unless its end was announced)."""
    now = [0.0]
    ended = Ended(remember_seconds=60, remember_max=3, clock=lambda: now[0])
    assert not ended.announced_lately("a")
    ended.wake("a")  # nobody waits: remembered all the same
    assert ended.announced_lately("a")
    assert not ended.announced_lately("b")
    for name in ("b", "c", "d"):
        ended.wake(name)
    assert not ended.announced_lately("a")  # the oldest go first past the bound
    assert all(ended.announced_lately(name) for name in ("b", "c", "d"))
    now[0] = 60.0
    assert ended.announced_lately("d")
    now[0] = 60.5
    assert not ended.announced_lately("d")  # and all of them after `remember_seconds`
    ended.wake("e")
    assert len(ended._recent) == 1
