"""PullFeed against FastStream's NATS pull subscriber, side by side (issue 11).

rb does not depend on FastStream; install it for this benchmark: `.venv/bin/pip install -e '.[bench]'`.

Starts its own nats-server (.venv/bin/nats-server, free port, temporary store) and, for each
contender, a stream and a durable pull consumer shaped like the worker's (explicit ack, AckWait,
max_deliver with backoff, max_ack_pending = 4 x concurrency), publishes the messages first, then
times consume + ack until the consumer's ack floor reaches the last message.

Contenders (each on a NATS connection of its own, in this process):
  pullfeed  rb_common.pull.PullFeed, capacity C, heartbeat AckWait/3, drain on stop (needs
            f6043b0 or later: before it, on nats-server 2.11+, a feed took C messages per
            request deadline under a backlog)
  faststream NatsBroker + subscriber(pull_sub=PullSub(batch_size=C), max_workers=C,
            ack_policy=MANUAL), no per-message logging, plus a broker middleware that registers
            running handlers for one ticker task sending in-progress acks every AckWait/3 (and
            NAKs a handler's message if it is cancelled)
  faststream-nodi  the same with apply_types=False (no FastDepends: FastDepends resolves the
            injected NatsMessage, a sync dependency, in a worker thread for every message)
  faststream-b1  the same as faststream with PullSub(batch_size=1) (the setting that bounds
            prefetch)

Scenarios: `fast` (N small messages, handler only acks) and `io` (handler awaits
asyncio.sleep(0.005) before acking). Rounds alternate the contenders' order (ABC, CBA, ...);
medians and ratios to pullfeed are printed.

Then small semantic experiments on the required behaviours (heartbeat, NAK on drain,
max-deliveries), each for pullfeed and faststream.

    .venv/bin/python bench/subscriber_compare.py [--rounds 3] [--fast 20000] [--io 2000]
        [--concurrency 32] [--skip-throughput] [--skip-semantics]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import AckPolicy as JsAckPolicy
from nats.js.api import ConsumerConfig, DeliverPolicy, StreamConfig

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "libs" / "common"))

from faststream import AckPolicy  # noqa: E402
from faststream._internal.middlewares import BaseMiddleware  # noqa: E402
from faststream.nats import JStream, NatsBroker, PullSub  # noqa: E402
from faststream.nats.annotations import NatsMessage  # noqa: E402

from rb_common.pull import PullFeed  # noqa: E402

NATS_SERVER = ROOT / ".venv" / "bin" / "nats-server"
PAYLOAD = b'{"execution_id":"e-0000000000","step":{"step_id":"s1","attempt":1},"outputs":{}}'

Work = Callable[[Msg], Awaitable[None]]


# --------------------------------------------------------------------------------------------
# nats-server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self) -> None:
        self.port = free_port()
        self.store = tempfile.mkdtemp(prefix="rb-subcmp-")
        self.url = f"nats://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        self.proc = subprocess.Popen(
            [str(NATS_SERVER), "-js", "-sd", self.store, "-a", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(100):
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    pass
                nc = await nats.connect(self.url, allow_reconnect=False)
                await nc.jetstream().account_info()
                await nc.close()
                return
            except Exception:
                await asyncio.sleep(0.05)
        raise RuntimeError("nats-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        shutil.rmtree(self.store, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# set-up shared by all contenders


def consumer_config(
    durable: str, subject: str, *, ack_wait: float, max_deliver: int = 10, concurrency: int = 32
) -> ConsumerConfig:
    """Shaped like the worker's (services/executor/rb_executor/service/worker.py)."""
    return ConsumerConfig(
        durable_name=durable,
        filter_subject=subject,
        ack_policy=JsAckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        ack_wait=ack_wait,
        max_deliver=max_deliver,
        backoff=[ack_wait * 2**n for n in range(min(4, max_deliver - 1))],
        max_ack_pending=max(concurrency * 4, 64),
    )


_seq = 0


async def prepare(
    nc: Client, n: int, *, ack_wait: float, max_deliver: int = 10, concurrency: int = 32
) -> tuple[str, str, str]:
    """A fresh stream holding n messages and a durable consumer on it."""
    global _seq
    _seq += 1
    stream, subject, durable = f"BENCH{_seq}", f"bench{_seq}.task", f"workers{_seq}"
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name=stream, subjects=[subject]))
    for i in range(n):
        await nc.publish(subject, PAYLOAD)
        if i % 1000 == 999:
            await nc.flush()
    await nc.flush()
    for _ in range(200):
        if (await js.stream_info(stream)).state.messages >= n:
            break
        await asyncio.sleep(0.05)
    else:
        raise RuntimeError("messages were not all stored")
    await js.add_consumer(
        stream,
        consumer_config(durable, subject, ack_wait=ack_wait, max_deliver=max_deliver, concurrency=concurrency),
    )
    return stream, subject, durable


class Tally:
    """What the handlers saw: handled count, deliveries per stream sequence, completion."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.handled = 0
        self.started = 0
        self.deliveries: dict[int, int] = {}
        self.done = asyncio.Event()

    def saw(self, msg: Msg) -> None:
        self.started += 1
        seq = msg.metadata.sequence.stream
        self.deliveries[seq] = self.deliveries.get(seq, 0) + 1

    def finished(self) -> None:
        self.handled += 1
        if self.handled >= self.target:
            self.done.set()

    @property
    def duplicates(self) -> int:
        return sum(v - 1 for v in self.deliveries.values())


def make_work(tally: Tally, sleep: float) -> Work:
    async def work(msg: Msg) -> None:
        tally.saw(msg)
        if sleep:
            await asyncio.sleep(sleep)
        await msg.ack()
        tally.finished()

    return work


# --------------------------------------------------------------------------------------------
# contenders: each exposes start(work) / stop() on a stream + durable


class PullFeedContender:
    name = "pullfeed"
    feed_class: type[PullFeed] = PullFeed

    def __init__(self, url: str, stream: str, subject: str, durable: str, *, concurrency: int,
                 ack_wait: float, grace: float) -> None:
        self.url, self.stream, self.durable = url, stream, durable
        self.concurrency, self.ack_wait, self.grace = concurrency, ack_wait, grace
        self.nc: Client | None = None
        self.stop_event = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        self.nc = await nats.connect(self.url)

    async def start(self, work: Work) -> None:
        assert self.nc is not None
        feed = self.feed_class(
            self.nc, self.stream, self.durable, work, capacity=self.concurrency,
            heartbeat=self.ack_wait / 3, drain=self.grace,
        )
        self.task = asyncio.create_task(feed.run(self.stop_event))

    async def flush(self) -> None:
        assert self.nc is not None
        await self.nc.flush()

    async def stop(self) -> None:
        self.stop_event.set()
        if self.task is not None:
            await self.task
        if self.nc is not None:
            await self.nc.drain()


class Heartbeats:
    """In-progress acks for FastStream handlers: a broker middleware registers each running
    handler's message; one ticker task sends `in_progress()` for those not heard of within
    `interval` (as PullFeed._beat does). A handler cancelled (stop past the grace period) has
    its message NAKed by the middleware."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.inflight: dict[int, tuple[Msg, float]] = {}
        self.sent = 0
        self.naked_on_cancel = 0
        beats = self

        class HeartbeatMiddleware(BaseMiddleware):  # type: ignore[type-arg]
            async def consume_scope(self, call_next: Any, msg: Any) -> Any:
                raw: Msg = msg.raw_message
                key = id(raw)
                beats.inflight[key] = (raw, time.monotonic())
                try:
                    return await call_next(msg)
                except asyncio.CancelledError:
                    if not raw._ackd:
                        beats.naked_on_cancel += 1
                        with contextlib.suppress(Exception):
                            await raw.nak()
                    raise
                finally:
                    beats.inflight.pop(key, None)

        self.middleware = HeartbeatMiddleware

    async def run(self) -> None:
        tick = min(1.0, self.interval)
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            for key, (raw, heard) in list(self.inflight.items()):
                if now - heard >= self.interval and not raw._ackd:
                    self.inflight[key] = (raw, now)
                    self.sent += 1
                    with contextlib.suppress(Exception):
                        await raw.in_progress()


class FastStreamContender:
    name = "faststream"

    def __init__(self, url: str, stream: str, subject: str, durable: str, *, concurrency: int,
                 ack_wait: float, grace: float, batch_size: int | None = None,
                 heartbeats: bool = True, apply_types: bool = True) -> None:
        self.url, self.stream, self.subject, self.durable = url, stream, subject, durable
        self.concurrency, self.ack_wait, self.grace = concurrency, ack_wait, grace
        self.batch_size = batch_size or concurrency
        self.beats = Heartbeats(ack_wait / 3) if heartbeats else None
        self.broker = NatsBroker(
            url,
            graceful_timeout=grace,
            logger=None,  # FastStream logs every message at INFO otherwise
            apply_types=apply_types,
            middlewares=[self.beats.middleware] if self.beats else (),
        )
        self.ticker: asyncio.Task[None] | None = None
        self.work: Work | None = None
        contender = self
        subscriber = self.broker.subscriber(
            subject,
            stream=JStream(stream, declare=False),
            durable=durable,
            pull_sub=PullSub(batch_size=self.batch_size, timeout=5.0),
            max_workers=concurrency,
            ack_policy=AckPolicy.MANUAL,
        )
        if apply_types:
            # the idiomatic handler: the message injected by FastDepends
            @subscriber
            async def handle(msg: NatsMessage) -> None:
                assert contender.work is not None
                await contender.work(msg.raw_message)
        else:
            context = self.broker.context

            @subscriber
            async def handle_plain(body: Any) -> None:
                assert contender.work is not None
                await contender.work(context.get_local("message").raw_message)

    async def connect(self) -> None:
        await self.broker.connect()

    async def start(self, work: Work) -> None:
        self.work = work
        if self.beats is not None:
            self.ticker = asyncio.create_task(self.beats.run())
        await self.broker.start()

    async def flush(self) -> None:
        await self.broker.config.connection_state.connection.flush()

    async def stop(self) -> None:
        await self.broker.stop()
        if self.ticker is not None:
            self.ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.ticker


def contender(kind: str, url: str, names: tuple[str, str, str], **kw: Any) -> Any:
    stream, subject, durable = names
    if kind == "pullfeed":
        return PullFeedContender(url, stream, subject, durable, **kw)
    if kind == "faststream":
        return FastStreamContender(url, stream, subject, durable, **kw)
    if kind == "faststream-nodi":
        c = FastStreamContender(url, stream, subject, durable, apply_types=False, **kw)
        c.name = "faststream-nodi"
        return c
    if kind == "faststream-b1":
        c = FastStreamContender(url, stream, subject, durable, batch_size=1, **kw)
        c.name = "faststream-b1"
        return c
    raise ValueError(kind)


# --------------------------------------------------------------------------------------------
# throughput


async def consumer_state(nc: Client, stream: str, durable: str) -> Any:
    return await nc.jetstream().consumer_info(stream, durable)


async def throughput_once(url: str, admin: Client, kind: str, n: int, sleep: float,
                          concurrency: int, ack_wait: float) -> dict[str, Any]:
    names = await prepare(admin, n, ack_wait=ack_wait, concurrency=concurrency)
    tally = Tally(n)
    c = contender(kind, url, names, concurrency=concurrency, ack_wait=ack_wait, grace=5.0)
    await c.connect()
    t0 = time.perf_counter()
    await c.start(make_work(tally, sleep))
    await asyncio.wait_for(tally.done.wait(), timeout=300)
    await c.flush()
    # consumed + acked: until the server's ack floor is the last message
    for _ in range(500):
        info = await consumer_state(admin, names[0], names[2])
        if info.ack_floor.stream_seq >= n and info.num_ack_pending == 0:
            break
        await asyncio.sleep(0.002)
    elapsed = time.perf_counter() - t0
    await c.stop()
    info = await consumer_state(admin, names[0], names[2])
    await admin.jetstream().delete_stream(names[0])
    return {
        "rate": n / elapsed,
        "elapsed": elapsed,
        "duplicates": tally.duplicates,
        "redelivered": info.num_redelivered,
        "ack_floor": info.ack_floor.stream_seq,
    }


async def throughput(url: str, args: argparse.Namespace) -> None:
    admin = await nats.connect(url)
    kinds = ["pullfeed", "faststream", "faststream-nodi", "faststream-b1"]
    scenarios = [("fast", args.fast, 0.0), ("io", args.io, 0.005)]
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for round_ in range(args.rounds):
        for scen, n, sleep in scenarios:
            order = kinds if round_ % 2 == 0 else list(reversed(kinds))
            for kind in order:
                r = await throughput_once(url, admin, kind, n, sleep, args.concurrency, args.ack_wait)
                results.setdefault((scen, kind), []).append(r)
                print(
                    f"round {round_ + 1} {scen:4} {kind:14} {r['rate']:9.0f} msg/s "
                    f"({r['elapsed']:.2f}s, dup {r['duplicates']}, redelivered {r['redelivered']})",
                    flush=True,
                )
    await admin.close()
    print()
    print(f"{'scenario':8} {'contender':14} {'median msg/s':>12} {'ratio':>7}  rounds")
    for scen, _n, _sleep in scenarios:
        base = statistics.median(r["rate"] for r in results[(scen, "pullfeed")])
        for kind in kinds:
            rates = [r["rate"] for r in results[(scen, kind)]]
            med = statistics.median(rates)
            print(
                f"{scen:8} {kind:14} {med:12.0f} {med / base:7.2f}  "
                + " ".join(f"{x:.0f}" for x in rates)
            )
    print()


# --------------------------------------------------------------------------------------------
# semantics


async def refetch(url: str, stream: str, subject: str, durable: str, timeout: float) -> list[Msg]:
    """What another worker would get from the consumer within `timeout` (and acks it)."""
    nc = await nats.connect(url)
    try:
        sub = await nc.jetstream().pull_subscribe_bind(durable=durable, stream=stream)
        got: list[Msg] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(nats.errors.TimeoutError):
                got += await sub.fetch(batch=100, timeout=max(0.05, deadline - time.monotonic()))
        for m in got:
            await m.ack()
        await nc.flush()
        return got
    finally:
        await nc.close()


async def heartbeat_experiment(url: str, admin: Client, kind: str) -> None:
    """Steps twice as long as AckWait, concurrency 4, 12 messages: does any get redelivered
    while it is running or waiting client-side?"""
    ack_wait, n, step = 1.5, 12, 3.0
    names = await prepare(admin, n, ack_wait=ack_wait, concurrency=4)
    tally = Tally(n)
    c = contender(kind, url, names, concurrency=4, ack_wait=ack_wait, grace=5.0)
    await c.connect()
    await c.start(make_work(tally, step))
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(tally.done.wait(), timeout=3 * step * n / 4 + 5)
    await c.flush()
    info = await consumer_state(admin, names[0], names[2])
    await c.stop()
    await admin.jetstream().delete_stream(names[0])
    sent = getattr(getattr(c, "beats", None), "sent", None)
    print(
        f"  heartbeat  {kind:14} handled {tally.handled}/{n}, handler runs {tally.started}, "
        f"duplicate runs {tally.duplicates}, server num_redelivered {info.num_redelivered}"
        + (f", in-progress acks sent by middleware {sent}" if sent is not None else "")
    )


async def drain_experiment(url: str, admin: Client, kind: str, *, step: float, grace: float,
                           n: int, label: str) -> None:
    """Stop shortly after start: do running handlers finish within the grace period, and is
    everything else handed back at once (another consumer gets it within 1.5 s, well before
    AckWait = 10 s)?"""
    ack_wait = 10.0
    names = await prepare(admin, n, ack_wait=ack_wait, concurrency=4)
    tally = Tally(n)
    c = contender(kind, url, names, concurrency=4, ack_wait=ack_wait, grace=grace)
    await c.connect()
    await c.start(make_work(tally, step))
    await asyncio.sleep(0.3)
    t = time.monotonic()
    await c.stop()
    stop_took = time.monotonic() - t
    info = await consumer_state(admin, names[0], names[2])
    got = await refetch(url, *names, timeout=1.5)
    unaccounted = n - tally.handled - len(got)
    await admin.jetstream().delete_stream(names[0])
    extra = ""
    if isinstance(c, FastStreamContender) and c.beats is not None:
        extra = f", middleware NAKed {c.beats.naked_on_cancel} cancelled"
    print(
        f"  drain/{label:5} {kind:14} started {tally.started}, finished+acked {tally.handled}, "
        f"stop took {stop_took:.2f}s, ack pending after stop {info.num_ack_pending}, "
        f"re-fetched within 1.5s {len(got)}, stuck until AckWait {unaccounted}{extra}"
    )


async def max_deliveries_experiment(url: str, admin: Client, kind: str) -> None:
    """max_deliver=2, handler NAKs every delivery: num_delivered seen by the handler, and the
    MAX_DELIVERIES advisory (received through the contender's own means)."""
    n = 3
    names = await prepare(admin, n, ack_wait=1.0, max_deliver=2, concurrency=4)
    stream = names[0]
    advisory_subject = f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{stream}.*"
    seen: list[int] = []
    advisories: list[bytes] = []

    async def work(msg: Msg) -> None:
        seen.append(msg.metadata.num_delivered)
        await msg.nak()

    if kind.startswith("pullfeed"):
        c = contender(kind, url, names, concurrency=4, ack_wait=1.0, grace=0.0)
        await c.connect()
        async def on_advisory_msg(m: Msg) -> None:
            advisories.append(m.data)

        sub = await c.nc.subscribe(advisory_subject, cb=on_advisory_msg)
        await c.start(work)
    else:
        c = contender(kind, url, names, concurrency=4, ack_wait=1.0, grace=0.0)

        @c.broker.subscriber(advisory_subject)
        async def on_advisory(body: Any) -> None:  # the advisory's JSON, decoded to a dict
            advisories.append(body)

        await c.connect()
        await c.start(work)
    for _ in range(60):
        if len(advisories) >= n:
            break
        await asyncio.sleep(0.1)
    await c.stop()
    if kind.startswith("pullfeed"):
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
    await admin.jetstream().delete_stream(stream)
    print(
        f"  maxdeliv   {kind:14} num_delivered seen {sorted(seen)}, "
        f"MAX_DELIVERIES advisories received {len(advisories)}/{n}"
    )


async def testbroker_experiment() -> None:
    """FastStream's TestNatsBroker: does a handler see JetStream metadata (num_delivered) and
    can it ack/nak/in_progress?"""
    from faststream.nats import TestNatsBroker

    broker = NatsBroker(logger=None)
    outcome: dict[str, Any] = {}

    @broker.subscriber(
        "t.task", stream=JStream("T", declare=False), durable="w",
        pull_sub=PullSub(batch_size=4), max_workers=4, ack_policy=AckPolicy.MANUAL,
    )
    async def handle(body: bytes, msg: NatsMessage) -> None:
        outcome["body"] = body
        try:
            outcome["num_delivered"] = msg.raw_message.metadata.num_delivered
        except Exception as exc:
            outcome["num_delivered"] = f"{type(exc).__name__}: {exc}"
        await msg.in_progress()
        await msg.ack()
        outcome["acked"] = True

    async with TestNatsBroker(broker) as tb:
        await tb.publish(b"hello", "t.task", stream="T")
    print(f"  TestNatsBroker: handler called with {outcome}")


async def semantics(url: str) -> None:
    admin = await nats.connect(url)
    print("semantics (concurrency 4):")
    for kind in ("pullfeed", "faststream", "faststream-b1"):
        await heartbeat_experiment(url, admin, kind)
    for kind in ("pullfeed", "faststream"):
        # handlers of 1 s, grace 3 s: running ones should finish, the rest come back at once
        await drain_experiment(url, admin, kind, step=1.0, grace=3.0, n=20, label="grace")
    for kind in ("pullfeed", "faststream"):
        # handlers of 30 s, grace 0.5 s: running ones are cancelled and should come back at once
        await drain_experiment(url, admin, kind, step=30.0, grace=0.5, n=4, label="cut")
    for kind in ("pullfeed", "faststream"):
        await max_deliveries_experiment(url, admin, kind)
    await testbroker_experiment()
    await admin.close()


# --------------------------------------------------------------------------------------------


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--fast", type=int, default=20000)
    parser.add_argument("--io", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--ack-wait", type=float, default=5.0)  # Settings.task_ack_wait
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-semantics", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    server = Server()
    await server.start()
    try:
        from faststream.__about__ import __version__ as faststream_version

        print(f"faststream {faststream_version}, "
              f"python {sys.version.split()[0]}, pid {os.getpid()}")
        if not args.skip_throughput:
            await throughput(server.url, args)
        if not args.skip_semantics:
            await semantics(server.url)
    finally:
        server.stop()


if __name__ == "__main__":
    asyncio.run(main())
