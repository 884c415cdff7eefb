"""The event log's append primitives against the real local NATS JetStream."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from bus_support import chain

from rb_common.bus import Bus, append_event, append_events, connect, read_execution
from rb_common.ports import ConcurrencyError

pytestmark = pytest.mark.integration

NATS_URL = os.environ["RB_TEST_NATS_URL"]


@pytest.fixture
async def bus() -> AsyncIterator[Bus]:
    connection = await connect(NATS_URL, name="rb-tests-bus")
    yield connection
    await connection.close()


class Interleaving:
    """The real JetStream context, except that just before the n-th publish it stores one message
    of another execution: what another writer's append looks like between two of ours."""

    def __init__(self, bus: Bus, before_publish: int) -> None:
        self.bus = bus
        self.calls = 0
        self.before_publish = before_publish
        self.foreign = uuid.uuid4().hex

    async def publish(self, subject: str, payload: bytes, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls == self.before_publish:
            [event] = chain(self.foreign, 1)
            # Queued on the connection ahead of our publish, so stored first.
            await self.bus.nc.publish(self.bus.names.exec_subject(self.foreign), event.to_json().encode())
        return await self.bus.js.publish(subject, payload, **kwargs)


async def test_pipelined_events_are_stored_in_order_and_back_to_back(bus: Bus) -> None:
    execution_id = uuid.uuid4().hex
    events = chain(execution_id, 5)
    last = await append_events(bus, events, 0)
    stored = await read_execution(bus, execution_id)
    assert [e.id for e, _ in stored] == [e.id for e in events]
    assert stored[-1][1] == last
    seqs = [seq for _, seq in stored]
    assert seqs == list(range(seqs[0], seqs[0] + 5)), "nothing in between"


async def test_an_event_of_another_execution_in_between_falls_back_without_loss(bus: Bus) -> None:
    execution_id = uuid.uuid4().hex
    events = chain(execution_id, 4)
    js = Interleaving(bus, before_publish=3)  # between our second and third event
    last = await append_events(Bus(bus.nc, js, bus.names), events, 0)  # type: ignore[arg-type]
    stored = await read_execution(bus, execution_id)
    assert [e.id for e, _ in stored] == [e.id for e in events], "each event once, in order"
    assert stored[-1][1] == last
    assert js.calls == 6, "events 3 and 4 were refused once and appended again"


async def test_a_stale_writer_stores_nothing(bus: Bus) -> None:
    execution_id = uuid.uuid4().hex
    first = chain(execution_id, 2)
    last = await append_events(bus, first, 0)
    # A second writer that did not see those two events.
    stale = chain(execution_id, 3, first_seq=1)
    with pytest.raises(ConcurrencyError):
        await append_events(bus, stale, 0)
    stored = await read_execution(bus, execution_id)
    assert [e.id for e, _ in stored] == [e.id for e in first]
    # The writer that is current goes on.
    more = chain(execution_id, 2, first_seq=3, prev_hash=first[-1].hash)
    await append_events(bus, more, last)
    assert len(await read_execution(bus, execution_id)) == 4


async def test_an_event_appended_twice_is_refused(bus: Bus) -> None:
    execution_id = uuid.uuid4().hex
    [event] = chain(execution_id, 1)
    last = await append_event(bus, event, 0)
    with pytest.raises(ConcurrencyError):
        await append_event(bus, event, last)


async def test_unpipelined_appends_are_the_same_record(bus: Bus) -> None:
    execution_id = uuid.uuid4().hex
    events = chain(execution_id, 3)
    await append_events(bus, events, 0, pipelined=False)
    stored = await read_execution(bus, execution_id)
    assert [e.id for e, _ in stored] == [e.id for e in events]
