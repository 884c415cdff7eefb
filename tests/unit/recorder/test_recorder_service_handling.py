"""How the recorder service acks, NAKs and terminates messages (fake messages, real SQLite).

The live wiring (durable consumer, redelivery) is tested against real NATS in
tests/integration/recorder; here the decisions per message, which the server cannot easily be
made to provoke (gaps, database errors, poison messages).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from recorder_support import ascenario_events
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from rb_common.events import Event
from rb_recorder.service import consume, error_delay, gap_delay
from rb_recorder.service import handle_message as _handle_message
from rb_store.db import make_engine, migrate
from rb_store.queries import get_events, get_execution
from rb_store.recorder import ApplyResult, Recorder


class FakeMsg:
    def __init__(self, data: bytes, stream_seq: int, delivered: int = 1) -> None:
        self.data = data
        self.subject = "rb.exec.test"
        self.metadata = SimpleNamespace(
            num_delivered=delivered, sequence=SimpleNamespace(stream=stream_seq, consumer=stream_seq)
        )
        self.outcome: tuple[str, float | None] | None = None

    @classmethod
    def of(cls, event: Event, stream_seq: int | None = None, delivered: int = 1) -> FakeMsg:
        return cls(event.to_json().encode(), stream_seq or event.seq, delivered)

    async def ack(self) -> None:
        self.outcome = ("ack", None)

    async def nak(self, delay: float | None = None) -> None:
        self.outcome = ("nak", delay)

    async def term(self) -> None:
        self.outcome = ("term", None)


async def handle_message(msg: FakeMsg, recorder: Recorder, blocked: set[str]) -> None:
    await _handle_message(cast(Any, msg), recorder, blocked)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'rb.db'}")
    migrate(engine)
    yield engine
    engine.dispose()


async def test_applied_and_redelivered_messages_are_acked(engine: Engine) -> None:
    stream = await ascenario_events("abort_skips_dependants")
    recorder = Recorder(engine)
    for event in stream:
        msg = FakeMsg.of(event)
        await handle_message(msg, recorder, set())
        assert msg.outcome == ("ack", None)
    again = FakeMsg.of(stream[2], delivered=2)
    await handle_message(again, recorder, set())
    assert again.outcome == ("ack", None)
    assert recorder.offset() == len(stream)


async def test_gap_is_nakked_with_delay_and_blocks_the_rest_of_that_execution(engine: Engine) -> None:
    stream = await ascenario_events("abort_skips_dependants")
    recorder = Recorder(engine)
    blocked: set[str] = set()
    ahead = FakeMsg.of(stream[1])
    await handle_message(ahead, recorder, blocked)
    assert ahead.outcome == ("nak", gap_delay(1))
    assert blocked == {stream[0].execution_id}
    # Later events of the same execution in the same batch wait too, without touching the DB.
    later = FakeMsg.of(stream[2])
    await handle_message(later, recorder, blocked)
    assert later.outcome is not None and later.outcome[0] == "nak"
    assert get_events(engine, stream[0].execution_id) == []


async def test_database_error_is_nakked_with_backoff(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    stream = await ascenario_events("abort_skips_dependants")
    recorder = Recorder(engine)

    def broken(event: Event, stream_seq: int | None = None) -> ApplyResult:
        raise OperationalError("INSERT", {}, Exception("server closed the connection"))

    monkeypatch.setattr(recorder, "apply", broken)
    msg = FakeMsg.of(stream[0], delivered=4)
    blocked: set[str] = set()
    await handle_message(msg, recorder, blocked)
    assert msg.outcome == ("nak", error_delay(4))
    assert error_delay(4) == 4.0 and error_delay(100) == 30.0 and gap_delay(100) == 2.0
    assert blocked == {stream[0].execution_id}


async def test_unreadable_message_is_terminated(engine: Engine) -> None:
    msg = FakeMsg(b'{"not": "an event"}', 1)
    await handle_message(msg, Recorder(engine), set())
    assert msg.outcome == ("term", None)


class FakeSubscription:
    """Hands out scripted batches, then times out like an idle pull consumer."""

    def __init__(self, batches: list[list[FakeMsg]], stop: asyncio.Event) -> None:
        self.batches = batches
        self.stop = stop

    async def fetch(self, batch: int = 1, timeout: float | None = None) -> list[FakeMsg]:
        if self.batches:
            return self.batches.pop(0)
        self.stop.set()
        raise TimeoutError


async def test_consume_applies_batches_in_order_until_stopped(engine: Engine) -> None:
    stream = await ascenario_events("continue_then_succeeds")
    msgs = [FakeMsg.of(e) for e in stream]
    stop = asyncio.Event()
    sub: Any = FakeSubscription([msgs[:4], msgs[4:]], stop)
    await asyncio.wait_for(consume(sub, Recorder(engine), stop), 5)
    assert all(m.outcome == ("ack", None) for m in msgs)
    assert len(get_events(engine, stream[0].execution_id)) == len(stream)


async def test_consume_applies_a_fetched_batch_in_one_go_and_acks_each(engine: Engine) -> None:
    stream = await ascenario_events("continue_then_succeeds")
    msgs = [FakeMsg.of(e) for e in stream]
    stop = asyncio.Event()
    recorder = Recorder(engine)
    real_batch = recorder.apply_batch
    batches: list[int] = []

    def record_batch(items):  # type: ignore[no-untyped-def]
        batches.append(len(items))
        stop.set()
        return real_batch(items)

    recorder.apply_batch = record_batch  # type: ignore[method-assign]
    sub: Any = FakeSubscription([msgs], stop)
    await asyncio.wait_for(consume(sub, recorder, stop), 5)
    assert batches == [len(msgs)]
    assert all(m.outcome == ("ack", None) for m in msgs)


async def test_consume_announces_an_end_once_it_is_committed(engine: Engine) -> None:
    """The long polls of the API wake on the announcement, so it must come after the commit (the
    end readable in the tables) and only for ends: one per execution end, none for a gap."""
    stream = await ascenario_events("continue_then_succeeds")
    execution_id = stream[0].execution_id
    seen: list[tuple[str, str | None]] = []

    async def announce(event: Event) -> None:
        seen.append((event.type.value, get_execution(engine, execution_id)["status"]))

    stop = asyncio.Event()
    msgs = [FakeMsg.of(e) for e in stream]
    # The end first, alone: a gap (earlier events missing), not applied, not announced.
    sub: Any = FakeSubscription([[msgs[-1]], msgs[:-1], [FakeMsg.of(stream[-1])]], stop)
    await asyncio.wait_for(consume(sub, Recorder(engine), stop, announce=announce), 5)
    assert msgs[-1].outcome is not None and msgs[-1].outcome[0] == "nak"
    assert seen == [("execution.succeeded", "SUCCEEDED")]
