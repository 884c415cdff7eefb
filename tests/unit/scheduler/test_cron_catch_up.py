"""Cron catch-up (issue 13): a schedule that comes back runs the fires it missed within the grace
(each, or once coalesced) and records older ones as missed; the API's list shows both."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from rb_api import registry
from rb_api.definitions import parse_submission
from rb_api.schedules import list_schedules
from rb_common.cron import cron_trigger
from rb_scheduler.cron import CronSchedules, missed_fires
from rb_store import schedules as fire_book
from rb_store.db import make_engine, migrate
from rb_store.registry import approved

RUNBOOK = """\
id: every-second
name: Every second
version: 1.0.0
owner: tests
legal_basis: Tests of the scheduler
triggers:
  - cron: "* * * * * *"
steps:
  - {id: a, type: transform, inputs: {x: 1}}
"""


@pytest.fixture
def engine(tmp_path: Path) -> Any:
    engine = make_engine(f"sqlite:///{tmp_path / 'rb.db'}")
    migrate(engine)
    registry.create(engine, parse_submission(RUNBOOK.encode(), "application/yaml"), "key:author")
    registry.set_status(engine, "every-second", registry.APPROVED, "key:approver")
    return engine


def test_missed_fires_are_the_fire_times_since_up_to_now() -> None:
    trigger = cron_trigger("* * * * * *", "UTC")
    since = datetime(2026, 1, 1, 10, 0, 0, tzinfo=UTC)
    fires = missed_fires(trigger, since, since + timedelta(seconds=3, milliseconds=500))
    assert [f.second for f in fires] == [1, 2, 3]
    assert missed_fires(trigger, since, since + timedelta(milliseconds=999)) == []


@pytest.mark.parametrize("coalesce", [False, True])
async def test_a_schedule_back_after_a_gap_runs_recent_fires_and_records_older_ones(
    engine: Any, coalesce: bool
) -> None:
    entries = approved(engine)
    now = datetime.now(UTC)
    if now.microsecond > 500_000:  # away from a second's edge: the grace check is exact
        await asyncio.sleep(1.05 - now.microsecond / 1e6)
        now = datetime.now(UTC)
    second = now.replace(microsecond=0)
    last = second - timedelta(seconds=6)  # fired last 6 s ago: 6 fires since, 3 within 3 s
    fire_book.record_fire(engine, "every-second", 0, last)
    fired: list[datetime] = []
    got_all = asyncio.Event()

    async def fire(runbook: Any, index: int, trigger: Any, when: datetime, eid: str, revision: int) -> None:
        fired.append(when)
        fire_book.record_fire(engine, runbook.id, index, when)
        if len([f for f in fired if f <= second]) >= (1 if coalesce else 3):
            got_all.set()

    async def missed(runbook_id: str, index: int, times: list[datetime]) -> None:
        fire_book.record_missed(engine, runbook_id, index, times)

    cron = CronSchedules(fire, misfire_grace=3, coalesce=coalesce, missed=missed)
    cron.start()
    try:
        cron.sync(
            entries, set(), {("every-second", 0): fire_book.last_fires(engine)[("every-second", 0)]}, now
        )
        await asyncio.wait_for(got_all.wait(), 5)
        await asyncio.gather(*cron.pending)
    finally:
        cron.shutdown()
    caught_up = [f for f in fired if f <= second]
    if coalesce:
        assert caught_up == [second]  # once, at the latest missed fire time
    else:
        assert caught_up == [second - timedelta(seconds=s) for s in (2, 1, 0)]  # each once
    # Fires older than the grace were not run, and are on record.
    [schedule] = list_schedules(engine)
    assert schedule["missed_fires"] == 3
    assert schedule["missed_recent"] == [(second - timedelta(seconds=s)).isoformat() for s in (3, 4, 5)]
    assert schedule["last_fire_time"] >= second.isoformat()


def test_fire_times_only_move_forward_and_misses_count_once(engine: Any) -> None:
    t = datetime(2026, 1, 1, 10, 0, 0, tzinfo=UTC)
    fire_book.record_fire(engine, "every-second", 0, t)
    fire_book.record_fire(engine, "every-second", 0, t - timedelta(seconds=5))  # a late replica
    assert fire_book.last_fires(engine) == {("every-second", 0): t}
    fire_book.record_missed(engine, "every-second", 0, [t, t + timedelta(seconds=1)])
    fire_book.record_missed(engine, "every-second", 0, [t])  # another replica saw it too
    assert fire_book.fire_summary(engine)[("every-second", 0)]["missed"] == 2
