"""rb_notifier.claims against a real JetStream: one claimant per delivery, a live claim holds
the others off, an expired one is taken over once, and a release never deletes a claim that
someone else took over."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from notifier_peers import NATS_URL

from rb_common.bus import Bus, connect
from rb_notifier.claims import Busy, Claim, Claims, claim_key

pytestmark = pytest.mark.integration

LEASE = 30.0


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 2, 0, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def bus() -> AsyncIterator[Bus]:
    connection = await connect(NATS_URL, namespace="clm" + uuid.uuid4().hex[:8], name="rb-claims-tests")
    yield connection
    for stream in connection.names.kv_streams():
        with contextlib.suppress(Exception):
            await connection.js.delete_stream(stream)
    await connection.close()


async def test_one_claimant_then_the_lease_then_one_taker(bus: Bus) -> None:
    clock = Clock()
    one, two, three = (Claims(bus, LEASE, clock=clock) for _ in range(3))
    mine = await one.acquire("ev1", "slack:#ops")
    assert isinstance(mine, Claim) and mine.taken_over is None
    info = await bus.js.stream_info(bus.names.claims_stream)
    assert info.config.num_replicas == bus.names.replicas

    clock.now += timedelta(seconds=10)
    held = await two.acquire("ev1", "slack:#ops")
    assert isinstance(held, Busy) and held.owner == mine.owner and held.wait == pytest.approx(LEASE - 10)
    other = await two.acquire("ev2", "slack:#ops")  # another delivery is free
    assert isinstance(other, Claim)

    clock.now += timedelta(seconds=LEASE)  # the claimant died: its claim outlived the lease
    taken = await two.acquire("ev1", "slack:#ops")
    assert isinstance(taken, Claim) and taken.taken_over == mine.owner
    assert isinstance(await three.acquire("ev1", "slack:#ops"), Busy)  # taken over once

    await one.release(mine)  # late: the claim is no longer its own, it stays
    assert isinstance(await three.acquire("ev1", "slack:#ops"), Busy)
    await two.release(taken)
    again = await three.acquire("ev1", "slack:#ops")
    assert isinstance(again, Claim) and again.taken_over is None  # released: free at once


def test_keys_are_valid_and_per_delivery() -> None:
    key = claim_key("ev1", "email:ops@example.com")
    assert len(key) == 64 and key.isalnum()
    assert key != claim_key("ev1", "slack:#ops") != claim_key("ev2", "slack:#ops")
