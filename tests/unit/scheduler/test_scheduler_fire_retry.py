"""A cron fire NATS cannot take at once (a stream leader election, a reconnect) is published
again under the same message id until it gets through; one that never does within
FIRE_PATIENCE is recorded as missed, so /schedules accounts for every fire time (issue 19's
chaos run had fires that both schedulers dropped on a stream leader's death)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from nats.errors import TimeoutError as NatsTimeoutError
from test_scheduler_files import _Ack
from test_scheduler_lifecycle import RUNBOOK

from rb_api import registry
from rb_api.definitions import parse_submission
from rb_common.bus import Names
from rb_common.settings import Settings
from rb_scheduler import service
from rb_scheduler.service import Scheduler
from rb_store import schedules as fire_book
from rb_store.db import make_engine, migrate
from rb_store.registry import approved


@dataclass
class _FlakyJetStream:
    """JetStream that times out `failures` times, then takes the message."""

    failures: int
    ids: list[str] = field(default_factory=list)

    async def publish(self, subject: str, payload: bytes, **kwargs: Any) -> _Ack:
        self.ids.append(kwargs["headers"]["Nats-Msg-Id"])
        if self.failures > 0:
            self.failures -= 1
            raise NatsTimeoutError
        return _Ack()


@dataclass
class _Bus:
    js: _FlakyJetStream
    names: Names = field(default_factory=Names)


def scheduler_with(tmp_path: Path, failures: int) -> tuple[Scheduler, _Bus, Any]:
    engine = make_engine(f"sqlite:///{tmp_path / 'rb.db'}")
    migrate(engine)
    registry.create(engine, parse_submission(RUNBOOK.format(rid="fired").encode(), "application/yaml"), "key:a")
    registry.set_status(engine, "fired", registry.APPROVED, "key:approver")
    bus = _Bus(_FlakyJetStream(failures))
    scheduler = Scheduler(bus, Settings(), engine=engine)  # type: ignore[arg-type]
    scheduler.view.load(approved(engine), 0)
    return scheduler, bus, engine


async def test_a_fire_is_published_again_until_it_gets_through(tmp_path: Path) -> None:
    scheduler, bus, engine = scheduler_with(tmp_path, failures=3)
    runbook = scheduler.view.current()[0].runbook
    when = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)
    await scheduler.fire(runbook, 0, runbook.triggers[0], when, "cron-fired-1")
    assert bus.js.ids == ["cron-fired-1"] * 4  # three timeouts, then taken: one message id
    summary = fire_book.fire_summary(engine)[("fired", 0)]
    assert summary["last_fire_time"] == when and summary["missed"] == 0
    engine.dispose()


async def test_a_fire_never_published_is_recorded_as_missed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service, "FIRE_PATIENCE", 1.0)
    scheduler, bus, engine = scheduler_with(tmp_path, failures=1000)
    runbook = scheduler.view.current()[0].runbook
    when = datetime(2026, 12, 2, 3, 5, tzinfo=UTC)
    await scheduler.fire(runbook, 0, runbook.triggers[0], when, "cron-fired-2")
    assert 2 <= len(bus.js.ids) <= 6  # tried for about a second, backing off
    summary = fire_book.fire_summary(engine)[("fired", 0)]
    assert summary["missed"] == 1 and summary["missed_recent"] == [when]
    engine.dispose()
