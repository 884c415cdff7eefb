"""An in-memory twin of the bus: the part of JetStream the API and its tests use, in one process.

`memory_bus()` returns a `Bus` whose `js` stores messages in lists, with the semantics rb relies
on: streams bound to subjects (the namespace's layout), message-id deduplication, the
Nats-Expected-Last-Subject-Sequence and Nats-Expected-Last-Msg-Id checks with JetStream's error
codes, last-message-per-subject reads, ordered subscriptions that replay the stored messages and
then deliver new ones, purges, deletes and per-subject counts. `close()` makes every later call
fail as a closed connection does. The contract tests (tests/integration/common/test_bus_contract.py)
run the same assertions against a real nats-server and this twin.

It is for tests of code that only needs a bus (the API's handlers): durable consumers,
acknowledgements, retention limits and KV watches are not modelled.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import nats.errors
from nats.aio.msg import Msg
from nats.js.api import DeliverPolicy, PubAck, RawStreamMsg
from nats.js.errors import APIError, NotFoundError

from rb_common.bus import DEFAULT_NAMES, WRONG_LAST_MSG_ID, WRONG_LAST_SEQUENCE, Bus, Names


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS wildcards: `*` one token, `>` one or more trailing tokens."""
    want, have = pattern.split("."), subject.split(".")
    for index, token in enumerate(want):
        if token == ">":
            return len(have) > index
        if index >= len(have) or (token != "*" and token != have[index]):
            return False
    return len(want) == len(have)


@dataclass
class _Stored:
    seq: int
    subject: str
    data: bytes
    headers: dict[str, str]
    time: float


@dataclass
class _Stream:
    name: str
    subjects: list[str]
    messages: dict[int, _Stored] = field(default_factory=dict)
    last_seq: int = 0
    msg_ids: dict[str, int] = field(default_factory=dict)
    last_per_subject: bool = False


@dataclass
class _State:
    last_seq: int
    messages: int
    subjects: dict[str, int] | None


@dataclass
class _Info:
    state: _State


class MemorySubscription:
    """An ordered subscription: the stored messages from the start policy on, then live ones."""

    def __init__(self, js: MemoryJetStream, pattern: str, stream: str) -> None:
        self.js = js
        self.pattern = pattern
        self.stream = stream
        self.queue: asyncio.Queue[Msg] = asyncio.Queue()
        self.closed = False
        self.delivered = 0

    def offer(self, stored: _Stored) -> None:
        if not self.closed and subject_matches(self.pattern, stored.subject):
            self.delivered += 1
            self.queue.put_nowait(self.js.as_msg(self.stream, stored, self.delivered))

    async def next_msg(self, timeout: float | None = 1.0) -> Msg:
        self.js.check_open()
        if self.closed:
            raise nats.errors.BadSubscriptionError
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            raise nats.errors.TimeoutError from None

    async def unsubscribe(self) -> None:
        self.closed = True
        self.js.subscriptions.discard(self)


class MemoryJetStream:
    def __init__(self, names: Names = DEFAULT_NAMES, duplicate_window: float = 600.0) -> None:
        self.streams: dict[str, _Stream] = {}
        for config in names.streams():
            assert config.name
            self.streams[config.name] = _Stream(config.name, list(config.subjects or []))
        self.subscriptions: set[MemorySubscription] = set()
        self.closed = False

    def check_open(self) -> None:
        if self.closed:
            raise nats.errors.ConnectionClosedError

    def _stream_for(self, subject: str) -> _Stream:
        for stream in self.streams.values():
            if any(subject_matches(pattern, subject) for pattern in stream.subjects):
                return stream
        if subject.startswith("$KV."):
            # A KV bucket is a stream KV_<bucket> on $KV.<bucket>.> keeping one value per key.
            bucket = subject.split(".")[1]
            stream = _Stream(f"KV_{bucket}", [f"$KV.{bucket}.>"], last_per_subject=True)
            self.streams[stream.name] = stream
            return stream
        raise nats.errors.NoRespondersError

    def _stream(self, name: str) -> _Stream:
        try:
            return self.streams[name]
        except KeyError:
            raise NotFoundError(code=404, err_code=10059, description="stream not found") from None

    @staticmethod
    def as_msg(stream: str, stored: _Stored, delivered: int) -> Msg:
        # The reply subject carries the metadata (`msg.metadata.sequence.stream`, ...), as
        # JetStream's do: $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ns>.<pending>.
        reply = f"$JS.ACK.{stream}.memory.1.{stored.seq}.{delivered}.{int(stored.time * 1e9)}.0"
        return Msg(
            _client=None,  # type: ignore[arg-type]
            subject=stored.subject,
            reply=reply,
            data=stored.data,
            headers=stored.headers or None,
        )

    # -- publishing ----------------------------------------------------------------------------
    async def publish(
        self,
        subject: str,
        payload: bytes = b"",
        timeout: float | None = None,
        stream: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> PubAck:
        self.check_open()
        target = self._stream_for(subject)
        if stream is not None and stream != target.name:
            raise APIError(code=400, err_code=10060, description="expected stream does not match")
        headers = dict(headers or {})
        msg_id = headers.get("Nats-Msg-Id")
        if msg_id and msg_id in target.msg_ids:
            return PubAck(stream=target.name, seq=target.msg_ids[msg_id], duplicate=True)
        expected_subject_seq = headers.get("Nats-Expected-Last-Subject-Sequence")
        if expected_subject_seq is not None:
            last = max((m.seq for m in target.messages.values() if m.subject == subject), default=0)
            if last != int(expected_subject_seq):
                raise APIError(code=400, err_code=WRONG_LAST_SEQUENCE, description="wrong last sequence")
        expected_msg_id = headers.get("Nats-Expected-Last-Msg-Id")
        if expected_msg_id is not None:
            last_id = next(
                (k for k, v in target.msg_ids.items() if v == target.last_seq and v in target.messages), ""
            )
            if last_id != expected_msg_id:
                raise APIError(code=400, err_code=WRONG_LAST_MSG_ID, description="wrong last msg id")
        target.last_seq += 1
        if target.last_per_subject:
            for seq in [s for s, m in target.messages.items() if m.subject == subject]:
                del target.messages[seq]
        stored = _Stored(target.last_seq, subject, bytes(payload), headers, time.time())
        target.messages[stored.seq] = stored
        if msg_id:
            target.msg_ids[msg_id] = stored.seq
        for sub in list(self.subscriptions):
            if sub.stream == target.name:
                sub.offer(stored)
        return PubAck(stream=target.name, seq=stored.seq)  # duplicate unset, as JetStream answers

    # -- reading -------------------------------------------------------------------------------

    async def get_last_msg(self, stream_name: str, subject: str, direct: bool | None = False) -> RawStreamMsg:
        self.check_open()
        stream = self._stream(stream_name)
        found = [m for m in stream.messages.values() if subject_matches(subject, m.subject)]
        if not found:
            raise NotFoundError(code=404, err_code=10037, description="no message found")
        return self._decoded(found[-1])

    async def get_msg(self, stream_name: str, seq: int, **_: Any) -> RawStreamMsg:
        self.check_open()
        stored = self._stream(stream_name).messages.get(seq)
        if stored is None:
            raise NotFoundError(code=404, err_code=10037, description="no message found")
        return self._decoded(stored)

    @staticmethod
    def _decoded(stored: _Stored) -> RawStreamMsg:
        # What nats-py hands back: decoded data and headers.
        return RawStreamMsg(
            subject=stored.subject,
            seq=stored.seq,
            data=stored.data,
            headers=stored.headers or None,
            stream=None,
            time=datetime.fromtimestamp(stored.time, UTC),
        )

    async def subscribe(
        self,
        subject: str,
        queue: str | None = None,
        cb: Any = None,
        durable: str | None = None,
        stream: str | None = None,
        ordered_consumer: bool = False,
        deliver_policy: DeliverPolicy | None = None,
        **_: Any,
    ) -> MemorySubscription:
        self.check_open()
        if cb is not None or durable is not None or queue is not None:
            raise NotImplementedError("the memory bus has ordered subscriptions only")
        target = self._stream_for(subject.replace(">", "x").replace("*", "x"))
        sub = MemorySubscription(self, subject, target.name)
        if deliver_policy in (None, DeliverPolicy.ALL):
            for stored in sorted(target.messages.values(), key=lambda m: m.seq):
                sub.offer(stored)
        elif deliver_policy == DeliverPolicy.LAST:
            matching = [m for m in target.messages.values() if subject_matches(subject, m.subject)]
            if matching:
                sub.offer(max(matching, key=lambda m: m.seq))
        self.subscriptions.add(sub)
        return sub

    async def stream_info(self, name: str, subjects_filter: str | None = None) -> _Info:
        self.check_open()
        stream = self._stream(name)
        subjects: dict[str, int] | None = None
        if subjects_filter is not None:
            subjects = {}
            for stored in stream.messages.values():
                if subject_matches(subjects_filter, stored.subject):
                    subjects[stored.subject] = subjects.get(stored.subject, 0) + 1
        return _Info(_State(last_seq=stream.last_seq, messages=len(stream.messages), subjects=subjects))

    async def consumer_info(self, stream: str, consumer: str, **_: Any) -> Any:
        """No durable consumers here (ordered subscriptions only): every one is unknown."""
        self.check_open()
        self._stream(stream)
        raise NotFoundError(code=404, err_code=10014, description="consumer not found")

    def messages(self, stream_name: str, subject: str) -> list[Msg]:
        """Everything stored on the subject (wildcards allowed), oldest first: for test probes."""
        stream = self._stream(stream_name)
        return [
            self.as_msg(stream.name, m, i)
            for i, m in enumerate(sorted(stream.messages.values(), key=lambda m: m.seq), 1)
            if subject_matches(subject, m.subject)
        ]

    # -- removing ------------------------------------------------------------------------------
    async def purge_stream(self, name: str, subject: str | None = None, **_: Any) -> bool:
        self.check_open()
        stream = self._stream(name)
        for seq in [
            s for s, m in stream.messages.items() if subject is None or subject_matches(subject, m.subject)
        ]:
            del stream.messages[seq]
        return True

    async def delete_msg(self, stream_name: str, seq: int) -> bool:
        self.check_open()
        stream = self._stream(stream_name)
        if stream.messages.pop(seq, None) is None:
            raise NotFoundError(code=404, err_code=10057, description="no message found")
        return True


class CoreSubscription:
    """A core-NATS subscription with a callback: what is published while it lasts, nothing
    stored."""

    def __init__(self, conn: MemoryConnection, pattern: str, cb: Callable[[Msg], Awaitable[None]]) -> None:
        self.conn = conn
        self.pattern = pattern
        self.cb = cb

    async def unsubscribe(self) -> None:
        self.conn.core.discard(self)


class MemoryConnection:
    """The core-NATS side: connected until closed; flush answers; publishes reach the core
    subscriptions (callbacks) whose subject matches, and are kept in `published`."""

    def __init__(self, js: MemoryJetStream) -> None:
        self.js = js
        self.published: list[tuple[str, bytes]] = []
        self.core: set[CoreSubscription] = set()

    async def subscribe(self, subject: str, cb: Callable[[Msg], Awaitable[None]], **_: Any) -> CoreSubscription:
        self.js.check_open()
        sub = CoreSubscription(self, subject, cb)
        self.core.add(sub)
        return sub

    @property
    def is_connected(self) -> bool:
        return not self.js.closed

    @property
    def is_closed(self) -> bool:
        return self.js.closed

    async def flush(self, timeout: float = 2.0) -> None:
        self.js.check_open()

    async def publish(self, subject: str, payload: bytes = b"", **_: Any) -> None:
        self.js.check_open()
        self.published.append((subject, payload))
        for sub in [s for s in self.core if subject_matches(s.pattern, subject)]:
            await sub.cb(Msg(cast(Any, self), subject=subject, data=payload))

    async def drain(self) -> None:
        await self.close()

    async def close(self) -> None:
        self.js.closed = True
        self.core.clear()
        for sub in list(self.js.subscriptions):
            await sub.unsubscribe()

    def jetstream(self, **_: Any) -> MemoryJetStream:
        return self.js


def memory_bus(names: Names = DEFAULT_NAMES) -> Bus:
    js = MemoryJetStream(names)
    return Bus(MemoryConnection(js), js, names)  # type: ignore[arg-type]
