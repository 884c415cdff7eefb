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
