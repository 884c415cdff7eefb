"""rb_api.dbutil.ThreadLane: a kind of work takes at most its threads of the pool at once."""

from __future__ import annotations

import asyncio
import threading

from rb_api.dbutil import ThreadLane


async def test_a_lane_runs_at_most_its_threads_at_once_and_queues_the_rest() -> None:
    lane = ThreadLane(2)
    loop = asyncio.get_running_loop()
    lock = threading.Lock()
    release = threading.Event()
    started = asyncio.Event()
    running = peak = 0

    def read(n: int) -> int:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
            if running == 2:
                loop.call_soon_threadsafe(started.set)
        assert release.wait(10)
        with lock:
            running -= 1
        return n

    reads = [asyncio.create_task(lane.run(read, n)) for n in range(6)]
    await asyncio.wait_for(started.wait(), 5)
    for _ in range(10):  # let every task reach the limiter (no thread is released meanwhile)
        await asyncio.sleep(0)
    assert lane._limiter is not None
    stats = lane._limiter.statistics()
    assert (stats.borrowed_tokens, stats.tasks_waiting) == (2, 4)
    release.set()
    assert await asyncio.wait_for(asyncio.gather(*reads), 10) == list(range(6))
    assert peak == 2
