"""Readiness from a service's registered checks."""

from __future__ import annotations

import asyncio

from rb_common.health import Health


async def test_a_service_with_no_checks_yet_is_not_ready() -> None:
    assert await Health().status() == (False, {})


async def test_ready_when_every_check_passes_sync_or_async() -> None:
    health = Health()

    async def database() -> bool:
        return True

    health.add("nats", lambda: True)
    health.add("database", database)
    assert await health.status() == (True, {"nats": "ok", "database": "ok"})


async def test_a_failing_raising_or_silent_check_says_why() -> None:
    health = Health(timeout=0.05)

    def broken() -> bool:
        raise ConnectionError("refused")

    async def silent() -> bool:
        await asyncio.sleep(10)
        return True

    health.add("nats", lambda: False)
    health.add("database", broken)
    health.add("slow", silent)
    ready, checks = await health.status()
    assert not ready
    assert checks == {
        "nats": "failing",
        "database": "ConnectionError: refused",
        "slow": "no answer within 0.05 s",
    }


async def test_a_check_that_has_not_answered_is_not_started_again() -> None:
    health = Health(timeout=0.05)
    started = 0
    release = asyncio.Event()

    async def hung() -> bool:
        nonlocal started
        started += 1
        await release.wait()
        return True

    health.add("database", hung)
    assert (await health.status())[0] is False
    assert (await health.status())[0] is False
    assert started == 1
    release.set()
    assert await health.status() == (True, {"database": "ok"})
    assert started == 1, "the answer of the hung check was used"
