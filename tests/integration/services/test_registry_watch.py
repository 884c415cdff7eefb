"""The router's registry follows the registry's change events (real NATS, SQLite): alerts are
matched as of their arrival, both ways, and wait for a registry that lags behind them."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from services_support import NATS_URL
from sqlalchemy import Engine, select

from rb_api import registry
from rb_api.definitions import parse_submission
from rb_common.bus import Bus, connect
from rb_common.messages import AlertEvent
from rb_common.registry_events import announce, last_seq
from rb_common.settings import Settings
from rb_scheduler.registry_feed import RegistryWatcher
from rb_scheduler.service import Scheduler
from rb_store.db import make_engine, migrate
from rb_store.tables import alerts

pytestmark = pytest.mark.integration

YAML = """
id: {rid}
name: Watched
triggers:
  - alert: {{source: webhook, match: {{alertname: DiskFull}}}}
    params: {{host: "${{trigger.labels.host}}"}}
parameters: {{type: object, properties: {{host: {{type: string}}}}}}
steps:
  - {{id: a, type: transform, inputs: {{host: "${{params.host}}"}}}}
"""


class FakeMsg:
    def __init__(self, alert: AlertEvent) -> None:
        self.data = alert.encode()
        self.outcome: str | None = None

    async def ack(self) -> None:
        self.outcome = "ack"

    async def term(self) -> None:
        self.outcome = "term"


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    e = make_engine(f"sqlite:///{tmp_path / 'rb.db'}")
    migrate(e)
    yield e
    e.dispose()


@pytest.fixture
async def bus(namespace: str) -> AsyncIterator[Bus]:
    connection = await connect(NATS_URL, namespace=namespace, name="rb-tests")
    yield connection
    for stream in [c.name for c in connection.names.streams()] + connection.names.kv_streams():
        with contextlib.suppress(Exception):
            await connection.js.delete_stream(stream)
    await connection.close()


class Registry:
    """Registry changes as the API makes them: commit, then announce."""

    def __init__(self, engine: Engine, bus: Bus) -> None:
        self.engine = engine
        self.bus = bus

    async def create(self, runbook_id: str) -> int | None:
        sub = parse_submission(YAML.format(rid=runbook_id).encode(), "application/yaml")
        result = registry.create(self.engine, sub, "tests")
        return await announce(
            self.bus, runbook_id, "created", revision=result["revision"], status=result["status"]
        )

    async def status(self, runbook_id: str, status: str) -> int | None:
        result = registry.set_status(self.engine, runbook_id, status)
        return await announce(
            self.bus, runbook_id, status.lower(), revision=result["revision"], status=result["status"]
        )


def alert(runbook_id: str, seq: int | None) -> AlertEvent:
    return AlertEvent(
        source="webhook",
        dedupe_id=uuid.uuid4().hex,
        name="DiskFull",
        labels={"alertname": "DiskFull", "host": "db-1"},
        runbook_id=runbook_id,
        registry_seq=seq,
    )


async def triggers_of(bus: Bus, runbook_id: str) -> int:
    subject = bus.names.trigger_subject(runbook_id)
    info = await bus.js.stream_info(bus.names.triggers_stream, subjects_filter=subject)
    return (info.state.subjects or {}).get(subject, 0)


def recorded(engine: Engine, event: AlertEvent) -> Any:
    with engine.connect() as conn:
        return conn.execute(select(alerts).where(alerts.c.dedupe_id == event.dedupe_id)).one()


async def until(predicate: Any, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


async def test_alerts_are_matched_as_of_their_arrival_both_ways(engine: Engine, bus: Bus) -> None:
    scheduler = Scheduler(bus, Settings(nats_url=NATS_URL, namespace=bus.names.namespace), engine)
    changed: list[str] = []
    watcher = RegistryWatcher(bus, engine, scheduler.view, lambda rid: changed.append(rid))
    await watcher.start()
    try:
        rid = f"w-{uuid.uuid4().hex[:8]}"
        registry_ops = Registry(engine, bus)
        await registry_ops.create(rid)
        approved = await registry_ops.status(rid, "APPROVED")
        assert approved is not None and approved == await last_seq(bus)
        while_approved = alert(rid, approved)
        deprecated = await registry_ops.status(rid, "DEPRECATED")
        assert deprecated is not None
        after = alert(rid, deprecated)
        await until(lambda: scheduler.view.applied >= deprecated)
        assert changed == [rid, rid, rid] and scheduler.view.current() == []

        # Routed after the deprecation, but it arrived while the runbook was approved: it matches.
        first = FakeMsg(while_approved)
        await scheduler.on_alert(first)  # type: ignore[arg-type]
        assert first.outcome == "ack" and await triggers_of(bus, rid) == 1
        row = recorded(engine, while_approved)
        assert row.matched and row.matches[0]["revision"] == 1 and row.registry_seq == approved
        # Arrived after the deprecation: nothing.
        second = FakeMsg(after)
        await scheduler.on_alert(second)  # type: ignore[arg-type]
        assert second.outcome == "ack" and await triggers_of(bus, rid) == 1
        row = recorded(engine, after)
        assert not row.matched and row.reason == f"runbook {rid!r} is not approved (or does not exist)"
    finally:
        await watcher.stop()


async def test_an_alert_waits_for_the_registry_to_catch_up(engine: Engine, bus: Bus) -> None:
    scheduler = Scheduler(bus, Settings(nats_url=NATS_URL, namespace=bus.names.namespace), engine)
    watcher = RegistryWatcher(bus, engine, scheduler.view)
    await watcher.start()
    await watcher.stop()  # a router that has not seen the next changes yet
    rid = f"w-{uuid.uuid4().hex[:8]}"
    registry_ops = Registry(engine, bus)
    await registry_ops.create(rid)
    approved = await registry_ops.status(rid, "APPROVED")
    msg = FakeMsg(alert(rid, approved))
    routing = asyncio.create_task(scheduler.on_alert(msg))  # type: ignore[arg-type]
    await asyncio.sleep(0.5)
    assert not routing.done()  # it waits rather than matching against a stale registry
    caught_up = RegistryWatcher(bus, engine, scheduler.view)
    await caught_up.start()
    try:
        await asyncio.wait_for(routing, 5)
        assert msg.outcome == "ack" and await triggers_of(bus, rid) == 1
    finally:
        await caught_up.stop()


async def test_a_registry_that_never_catches_up_delays_an_alert_boundedly(engine: Engine, bus: Bus) -> None:
    scheduler = Scheduler(bus, Settings(nats_url=NATS_URL, namespace=bus.names.namespace), engine)
    scheduler.registry_wait = 0.3
    rid = f"w-{uuid.uuid4().hex[:8]}"
    msg = FakeMsg(alert(rid, 10**9))  # a sequence no registry change will ever have
    await asyncio.wait_for(scheduler.on_alert(msg), 5)  # type: ignore[arg-type]
    assert (
        msg.outcome == "ack"
        and not recorded(engine, alert_row := AlertEvent.model_validate_json(msg.data)).matched
    )
    assert alert_row.registry_seq == 10**9
