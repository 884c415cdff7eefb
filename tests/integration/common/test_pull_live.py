"""The continuous pull consumer against the real local NATS JetStream."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig

from rb_common.pull import PullFeed

pytestmark = pytest.mark.integration

NATS_URL = os.environ["RB_TEST_NATS_URL"]


@dataclass
class Queue:
    nc: Client
    js: JetStreamContext
    stream: str
    subject: str
    durable: str = "feed"

    async def put(self, count: int) -> None:
        for i in range(count):
            await self.js.publish(self.subject, str(i).encode(), stream=self.stream)

    def feed(self, handler: Callable[[Msg], Awaitable[None]], **options: float) -> PullFeed:
        return PullFeed(self.nc, self.stream, self.durable, handler, **options)  # type: ignore[arg-type]


@pytest.fixture
async def queue() -> AsyncIterator[Queue]:
    nc = await nats.connect(NATS_URL, name="rb-tests-pull")
    js = nc.jetstream()
    name = f"RB_TEST_PULL_{uuid.uuid4().hex[:8].upper()}"
    subject = f"rb-test-pull.{name}"
    await js.add_stream(StreamConfig(name=name, subjects=[subject]))
    await js.add_consumer(
        name, ConsumerConfig(durable_name="feed", ack_policy=AckPolicy.EXPLICIT, ack_wait=2)
    )
    yield Queue(nc, js, name, subject)
    await js.delete_stream(name)
    await nc.close()


def acking() -> tuple[Callable[[Msg], Awaitable[None]], asyncio.Event]:
    """A handler that acknowledges, and the event it sets when it has."""
    got = asyncio.Event()

    async def handler(msg: Msg) -> None:
        await msg.ack()
        got.set()

    return handler, got


async def wait_requests(feed: PullFeed, count: int) -> None:
    async with asyncio.timeout(10):
        while feed.requested < count:
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def running(feed: PullFeed) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(feed.run(stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def test_every_message_is_handled_never_more_at_once_than_the_capacity(queue: Queue) -> None:
    release = asyncio.Event()
    handled: list[bytes] = []
    active, most = 0, 0
    all_done = asyncio.Event()

    async def handler(msg: Msg) -> None:
        nonlocal active, most
        active += 1
        most = max(most, active)
        await release.wait()
        handled.append(msg.data)
        await msg.ack()
        active -= 1
        if len(handled) == 20:
            all_done.set()

    async with running(queue.feed(handler, capacity=4)):
        await queue.put(20)
        async with asyncio.timeout(10):
            while active < 4:
                await asyncio.sleep(0.01)
        release.set()
        await asyncio.wait_for(all_done.wait(), 10)
    assert most == 4
    assert sorted(handled, key=int) == [str(i).encode() for i in range(20)]


async def test_messages_after_a_request_expired_still_arrive(queue: Queue) -> None:
    handler, got = acking()
    feed = queue.feed(handler, capacity=2, expires=0.3)
    async with running(feed):
        # Outlive several requests: the server ends each after 0.3 s and the feed renews it.
        await wait_requests(feed, 4)
        await queue.put(1)
        await asyncio.wait_for(got.wait(), 5)
    assert len(feed.requests) <= 2


async def test_an_unacknowledged_message_comes_back(queue: Queue) -> None:
    deliveries: list[int] = []
    redelivered = asyncio.Event()

    async def handler(msg: Msg) -> None:
        deliveries.append(msg.metadata.num_delivered)
        if msg.metadata.num_delivered == 1:
            return  # as if the worker died: no ack
        await msg.ack()
        redelivered.set()

    async with running(queue.feed(handler, capacity=2)):
        await queue.put(1)
        await asyncio.wait_for(redelivered.wait(), 10)  # after the consumer's 2 s AckWait
    assert deliveries == [1, 2]


async def test_stopping_cancels_the_running_handlers_and_hands_their_messages_back(queue: Queue) -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def stuck(msg: Msg) -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async with running(queue.feed(stuck, capacity=1)):
        await queue.put(1)
        await asyncio.wait_for(started.wait(), 5)
    assert cancelled.is_set()

    # The next consumer gets the message at once, not after the 2 s AckWait.
    redelivered = asyncio.Event()
    loop = asyncio.get_running_loop()
    stopped_at = loop.time()

    async def takes_over(msg: Msg) -> None:
        assert msg.metadata.num_delivered == 2
        await msg.ack()
        redelivered.set()

    async with running(queue.feed(takes_over, capacity=1)):
        await asyncio.wait_for(redelivered.wait(), 5)
    assert loop.time() - stopped_at < 1.5


async def test_a_long_handler_keeps_its_message_past_the_ack_wait(queue: Queue) -> None:
    deliveries: list[int] = []
    done = asyncio.Event()

    async def handler(msg: Msg) -> None:
        deliveries.append(msg.metadata.num_delivered)
        await asyncio.sleep(3.5)  # the step itself: longer than the consumer's 2 s AckWait
        await msg.ack()
        done.set()

    async with running(queue.feed(handler, capacity=2, heartbeat=0.5)):
        await queue.put(1)
        await asyncio.wait_for(done.wait(), 10)
    assert deliveries == [1], "heartbeats keep the message with its handler"


async def test_stopping_lets_running_handlers_finish_within_the_drain_period(queue: Queue) -> None:
    started = asyncio.Event()
    finished: list[bytes] = []

    async def handler(msg: Msg) -> None:
        started.set()
        await asyncio.sleep(0.3)
        await msg.ack()
        finished.append(msg.data)

    async with running(queue.feed(handler, capacity=1, drain=5)):
        await queue.put(1)
        await asyncio.wait_for(started.wait(), 5)
    assert finished == [b"0"]


async def test_a_consumer_deleted_and_created_again_is_picked_up_again(queue: Queue) -> None:
    handler, got = acking()
    feed = queue.feed(handler, capacity=2, expires=0.5)
    async with running(feed):
        await queue.js.delete_consumer(queue.stream, queue.durable)
        # Requests to the missing consumer go unanswered: the feed forgets them and asks again.
        await wait_requests(feed, feed.requested + 2)
        await queue.js.add_consumer(
            queue.stream,
            ConsumerConfig(durable_name=queue.durable, ack_policy=AckPolicy.EXPLICIT, ack_wait=2),
        )
        await queue.put(1)
        await asyncio.wait_for(got.wait(), 10)


async def test_the_capacity_holds_across_interleaved_and_expired_requests(queue: Queue) -> None:
    """The server spreads deliveries over the outstanding requests and expires them with a
    count of what it still owed: the feed must keep exact credit through both."""
    releases: dict[bytes, asyncio.Event] = {}
    active, most = 0, 0

    async def handler(msg: Msg) -> None:
        nonlocal active, most
        active += 1
        most = max(most, active)
        try:
            await releases.setdefault(msg.data, asyncio.Event()).wait()
            await msg.ack()
        finally:
            active -= 1

    async def until(condition: Callable[[], bool]) -> None:
        async with asyncio.timeout(10):
            while not condition():
                await asyncio.sleep(0.02)

    async def put(*names: str) -> None:
        for name in names:
            await queue.js.publish(queue.subject, name.encode(), stream=queue.stream)

    feed = queue.feed(handler, capacity=8, expires=1.0)
    async with running(feed):
        await put(*(f"a{i}" for i in range(6)))
        await until(lambda: active == 6)
        for i in range(4):
            releases[f"a{i}".encode()].set()  # frees 4: a second request goes out beside the first
        await until(lambda: active == 2)
        await put("b0", "b1")
        await until(lambda: active == 4)
        renewed = feed.requested + 2
        await until(lambda: feed.requested >= renewed)  # requests expired (408) and were renewed
        await put(*(f"c{i}" for i in range(20)))
        await until(lambda: active == 8)
        await asyncio.sleep(0.5)  # room for a ninth to arrive if the credit were wrong
        assert most == 8
        for event in releases.values():
            event.set()
        for i in range(20):
            releases.setdefault(f"c{i}".encode(), asyncio.Event()).set()
        await until(lambda: active == 0)
