"""The recorder service against real NATS JetStream and a real database (SQLite and PostgreSQL).

Each test uses its own executions and a private durable consumer filtered to them, so tests
never see each other's events (nor production's "recorder" consumer).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from recorder_projection_cases import snapshot
from recorder_support import NATS_URL, ascenario_events, assert_projection_matches_fold
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from rb_common.bus import DEFAULT_NAMES, Bus, append_event, connect
from rb_common.events import Event
from rb_common.settings import Settings
from rb_recorder.service import run_recorder
from rb_store.db import database_url, make_engine
from rb_store.queries import get_events, get_execution
from rb_store.recorder import ApplyResult, Recorder

pytestmark = pytest.mark.integration

TERMINAL = {"SUCCEEDED", "FAILED", "ABORTED", "CANCELLED"}


async def publish(bus: Bus, events: list[Event]) -> list[int]:
    """Append like the coordinator does: dedupe id + expected last subject sequence."""
    last = 0
    seqs = []
    for event in events:
        last = await append_event(bus, event, last)
        seqs.append(last)
    return seqs


async def eventually(check: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll `check` (run in a thread: it queries the database) until truthy or the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = await asyncio.to_thread(check)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


def count_events(engine: Engine, execution_id: str) -> int:
    try:
        return len(get_events(engine, execution_id))
    except DBAPIError:  # the service has not created the tables yet
        return -1


def recorded(engine: Engine, events: list[Event]) -> bool:
    try:
        detail = get_execution(engine, events[0].execution_id)
    except DBAPIError:  # the service has not created the tables yet
        return False
    return (
        detail is not None
        and detail["status"] in TERMINAL
        and len(get_events(engine, events[0].execution_id)) == len(events)
    )


class Service:
    """run_recorder as a task, private consumer on one execution subject."""

    def __init__(self, settings: Settings, consumer: str, execution_id: str) -> None:
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(
            run_recorder(
                settings,
                self.stop,
                consumer=consumer,
                subjects=(DEFAULT_NAMES.exec_subject(execution_id),),
                fetch_timeout=0.2,
            )
        )

    async def shutdown(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 10)  # also re-raises anything the service raised


StartRecorder = Callable[[Settings, str], Service]


@pytest.fixture
async def start_recorder(consumer_name: str) -> AsyncIterator[StartRecorder]:
    """`start_recorder(settings, execution_id)`: the service on this test's private consumer.
    Every service still running at the end is stopped before the consumer is deleted (else a
    service still starting up could create the consumer after its deletion)."""
    started: list[Service] = []

    def start(settings: Settings, execution_id: str) -> Service:
        service = Service(settings, consumer_name, execution_id)
        started.append(service)
        return service

    yield start
    for service in started:
        service.stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(service.task), 10)
        if not service.task.done():
            service.task.cancel()
            with contextlib.suppress(BaseException):
                await service.task


@pytest.fixture(params=["sqlite", "postgresql"])
def db_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    if request.param == "sqlite":
        return Settings(home=tmp_path / ".rb", nats_url=NATS_URL)
    url = request.getfixturevalue("pg_database_url")
    return Settings(home=tmp_path / ".rb", nats_url=NATS_URL, database_url=url)


async def a_run(scenario: str = "retries_then_succeeds") -> list[Event]:
    return await ascenario_events(scenario)


async def test_live_events_are_recorded_and_redelivery_is_idempotent(
    db_settings: Settings, consumer_name: str, start_recorder: StartRecorder
) -> None:
    events = await a_run()
    eid = events[0].execution_id
    bus = await connect(NATS_URL, name="rb-recorder-test")
    engine = make_engine(database_url(db_settings))
    service = start_recorder(db_settings, eid)
    try:
        stream_seqs = await publish(bus, events)
        await eventually(lambda: recorded(engine, events), what="the projection to reach a terminal status")
        await service.shutdown()
        assert get_events(engine, eid) == [e.model_dump(mode="json") for e in events]
        assert_projection_matches_fold(engine, events)
        recorder = Recorder(engine, consumer=consumer_name)
        assert recorder.offset() == stream_seqs[-1]
        before = snapshot(engine, eid)
        for event in (events[0], events[5], events[-1]):
            assert recorder.apply(event) == ApplyResult.DUPLICATE
            assert recorder.apply(event) == ApplyResult.DUPLICATE
        assert snapshot(engine, eid) == before
    finally:
        engine.dispose()
        await bus.close()


async def test_live_recorder_catches_up_on_events_published_while_it_was_down(
    db_settings: Settings, start_recorder: StartRecorder
) -> None:
    events = await a_run("rollback_with_failed_compensation")
    eid = events[0].execution_id
    bus = await connect(NATS_URL, name="rb-recorder-test")
    engine = make_engine(database_url(db_settings))
    try:
        # Half while the recorder runs, the rest while it is down, then it comes back.
        half = len(events) // 2
        service = start_recorder(db_settings, eid)
        last = 0
        for event in events[:half]:
            last = await append_event(bus, event, last)
        await eventually(lambda: count_events(engine, eid) == half, what="the first half")
        await service.shutdown()
        for event in events[half:]:
            last = await append_event(bus, event, last)
        assert len(get_events(engine, eid)) == half
        service = start_recorder(db_settings, eid)
        await eventually(lambda: recorded(engine, events), what="catch-up")
        await service.shutdown()
        assert get_events(engine, eid) == [e.model_dump(mode="json") for e in events]
        assert_projection_matches_fold(engine, events)
    finally:
        engine.dispose()
        await bus.close()


async def test_live_recorder_started_after_everything_was_published(
    tmp_path: Path, start_recorder: StartRecorder
) -> None:
    events = await a_run("continue_then_succeeds")
    eid = events[0].execution_id
    bus = await connect(NATS_URL, name="rb-recorder-test")
    settings = Settings(home=tmp_path / ".rb", nats_url=NATS_URL)
    engine = make_engine(database_url(settings))
    try:
        await publish(bus, events)
        service = start_recorder(settings, eid)
        await eventually(lambda: recorded(engine, events), what="catch-up")
        await service.shutdown()
        assert_projection_matches_fold(engine, events)
    finally:
        engine.dispose()
        await bus.close()


async def test_live_fresh_database_behind_an_old_consumer_is_replayed_in_full(
    tmp_path: Path, start_recorder: StartRecorder
) -> None:
    """The durable consumer has acked everything, but a new (or restored) database has not seen
    it: the recorder notices from consumer_offsets and replays the stream from the start."""
    events = await a_run("abort_skips_dependants")
    eid = events[0].execution_id
    bus = await connect(NATS_URL, name="rb-recorder-test")
    first = Settings(home=tmp_path / "one", nats_url=NATS_URL)
    second = Settings(home=tmp_path / "two", nats_url=NATS_URL)
    engines = [make_engine(database_url(s)) for s in (first, second)]
    try:
        await publish(bus, events)
        service = start_recorder(first, eid)
        await eventually(lambda: recorded(engines[0], events), what="the first database")
        await service.shutdown()
        service = start_recorder(second, eid)
        await eventually(lambda: recorded(engines[1], events), what="the fresh database")
        await service.shutdown()
        assert get_events(engines[1], eid) == get_events(engines[0], eid)
        assert_projection_matches_fold(engines[1], events)
    finally:
        for engine in engines:
            engine.dispose()
        await bus.close()
