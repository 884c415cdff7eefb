"""One contract, two buses: a real nats-server and the in-memory twin must behave alike on
everything the API and the event log rely on."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator

import nats.errors
import pytest
from bus_support import chain
from nats.js.errors import NotFoundError

from rb_common.bus import Bus, append_event, append_events, connect, last_subject_seq, read_execution
from rb_common.memory_bus import memory_bus, subject_matches
from rb_common.ports import ConcurrencyError

pytestmark = pytest.mark.integration


@pytest.fixture(params=["nats", "memory"])
async def bus(request: pytest.FixtureRequest, namespace: str) -> AsyncIterator[Bus]:
    if request.param == "memory":
        yield memory_bus()
        return
    url = os.environ["RB_TEST_NATS_URL"]
    connection = await connect(url, namespace=namespace, name="rb-contract")
    yield connection
    cleanup = await connect(url, namespace=namespace, name="rb-contract-cleanup")
    for config in cleanup.names.streams():
        await cleanup.js.delete_stream(config.name or "")
    await cleanup.close()
    if not connection.nc.is_closed:
        await connection.close()


async def test_a_message_id_is_stored_once(bus: Bus) -> None:
    subject = bus.names.trigger_subject("contract")
    first = await bus.js.publish(
        subject, b"a", headers={"Nats-Msg-Id": "m1"}, stream=bus.names.triggers_stream
    )
    again = await bus.js.publish(
        subject, b"b", headers={"Nats-Msg-Id": "m1"}, stream=bus.names.triggers_stream
    )
    assert (bool(first.duplicate), bool(again.duplicate)) == (False, True)
    assert again.seq == first.seq
    info = await bus.js.stream_info(bus.names.triggers_stream, subjects_filter=subject)
    assert (info.state.subjects or {}).get(subject) == 1


async def test_the_event_log_is_single_writer_and_read_back_in_order(bus: Bus) -> None:
    execution_id = uuid.uuid4().hex
    events = chain(execution_id, 5)
    assert await last_subject_seq(bus, execution_id) == 0
    last = await append_events(bus, events[:3], 0)
    with pytest.raises(ConcurrencyError):
        await append_event(bus, events[3], last - 1)  # a stale writer
    last = await append_events(bus, events[3:], last)
    stored = await read_execution(bus, execution_id)
    assert [e.id for e, _ in stored] == [e.id for e in events]
    assert stored[-1][1] == last == await last_subject_seq(bus, execution_id)
    with pytest.raises(ConcurrencyError):
        await append_event(bus, events[0], last)  # the same event again


async def test_last_message_and_not_found(bus: Bus) -> None:
    with pytest.raises(NotFoundError):
        await bus.js.get_last_msg(bus.names.events_stream, bus.names.exec_subject("nothing-here"))
    subject = bus.names.control_subject("x1")
    await bus.js.publish(subject, b"one", stream=bus.names.inbox_stream)
    await bus.js.publish(subject, b"two", headers={"k": "v"}, stream=bus.names.inbox_stream)
    last = await bus.js.get_last_msg(bus.names.inbox_stream, subject)
    assert last.data == b"two" and (last.headers or {}).get("k") == "v"


async def test_an_ordered_subscription_replays_then_follows(bus: Bus) -> None:
    subject = bus.names.exec_subject(uuid.uuid4().hex)
    await bus.js.publish(subject, b"1", stream=bus.names.events_stream)
    sub = await bus.js.subscribe(subject, ordered_consumer=True)
    try:
        first = await sub.next_msg(timeout=5)
        with pytest.raises(nats.errors.TimeoutError):
            await sub.next_msg(timeout=0.2)
        ack = await bus.js.publish(subject, b"2", stream=bus.names.events_stream)
        second = await sub.next_msg(timeout=5)
        assert (first.data, second.data) == (b"1", b"2")
        assert second.metadata.sequence.stream == ack.seq
    finally:
        await sub.unsubscribe()


async def test_purge_and_delete(bus: Bus) -> None:
    subject = bus.names.alert_subject("contract")
    acks = [await bus.js.publish(subject, b"x", stream=bus.names.triggers_stream) for _ in range(3)]
    await bus.js.delete_msg(bus.names.triggers_stream, acks[0].seq)
    info = await bus.js.stream_info(bus.names.triggers_stream, subjects_filter=subject)
    assert (info.state.subjects or {}).get(subject) == 2
    await bus.js.purge_stream(bus.names.triggers_stream, subject=subject)
    info = await bus.js.stream_info(bus.names.triggers_stream, subjects_filter=subject)
    assert (info.state.subjects or {}).get(subject, 0) == 0


async def test_a_closed_connection_refuses(bus: Bus) -> None:
    await bus.nc.close()
    with pytest.raises((nats.errors.ConnectionClosedError, asyncio.TimeoutError, nats.errors.TimeoutError)):
        await bus.js.publish(bus.names.trigger_subject("x"), b"x", stream=bus.names.triggers_stream)


def test_wildcards() -> None:
    assert subject_matches("rb.exec.*", "rb.exec.abc")
    assert not subject_matches("rb.exec.*", "rb.exec.abc.def")
    assert subject_matches("rb.>", "rb.exec.abc")
    assert not subject_matches("rb.>", "rb")
    assert not subject_matches("rb.exec.abc", "rb.exec")
