"""Cron fire bookkeeping (tables schedule_fires, schedule_misses): written by every scheduler
replica, read by schedulers when they start (catch-up) and by the API (GET /schedules).

Both writes are idempotent across replicas: the last fire time only moves forward, and a
missed fire time is one row however many replicas report it.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from rb_store.recorder import upsert
from rb_store.tables import schedule_fires, schedule_misses, schedule_state

Key = tuple[str, int]


def utc(value: datetime) -> datetime:
    """SQLite gives naive datetimes back: they were written in UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def last_fires(engine: Engine) -> dict[Key, datetime]:
    with engine.connect() as connection:
        rows = connection.execute(
            select(
                schedule_fires.c.runbook_id, schedule_fires.c.trigger_index, schedule_fires.c.last_fire_time
            )
        )
        return {(r.runbook_id, r.trigger_index): utc(r.last_fire_time) for r in rows}


def resumed(engine: Engine) -> dict[Key, datetime]:
    """When each schedule that is not paused was last paused or resumed: nothing before a
    resume was missed."""
    with engine.connect() as connection:
        rows = connection.execute(
            select(
                schedule_state.c.runbook_id, schedule_state.c.trigger_index, schedule_state.c.updated_at
            ).where(schedule_state.c.paused.is_(False))
        )
        return {(r.runbook_id, r.trigger_index): utc(r.updated_at) for r in rows}


def record_fire(engine: Engine, runbook_id: str, index: int, fire_time: datetime) -> None:
    """The schedule fired at `fire_time` (published): the last fire time moves forward only."""
    now = datetime.now(UTC)
    where = (schedule_fires.c.runbook_id == runbook_id, schedule_fires.c.trigger_index == index)
    for _ in range(3):
        try:
            with engine.begin() as connection:
                moved = connection.execute(
                    update(schedule_fires)
                    .where(*where, schedule_fires.c.last_fire_time < fire_time)
                    .values(last_fire_time=fire_time, updated_at=now)
                )
                # A fire another replica had given up on (and recorded as missed) got through.
                connection.execute(
                    delete(schedule_misses).where(
                        schedule_misses.c.runbook_id == runbook_id,
                        schedule_misses.c.trigger_index == index,
                        schedule_misses.c.fire_time == fire_time.astimezone(UTC),
                    )
                )
                if moved.rowcount:
                    return
                if connection.execute(select(schedule_fires.c.runbook_id).where(*where)).first() is None:
                    connection.execute(
                        insert(schedule_fires).values(
                            runbook_id=runbook_id,
                            trigger_index=index,
                            last_fire_time=fire_time,
                            updated_at=now,
                        )
                    )
                return
        except IntegrityError:
            continue  # another replica inserted it first: update it


def record_missed(engine: Engine, runbook_id: str, index: int, fire_times: Iterable[datetime]) -> None:
    now = datetime.now(UTC)
    rows = [
        {"runbook_id": runbook_id, "trigger_index": index, "fire_time": t.astimezone(UTC), "recorded_at": now}
        for t in fire_times
    ]
    with engine.begin() as connection:
        upsert(connection, schedule_misses, rows, ["runbook_id", "trigger_index", "fire_time"])


def fire_summary(engine: Engine, recent: int = 10) -> dict[Key, dict[str, Any]]:
    """Per schedule: the last fire time, how many fires were missed and the latest of them."""
    out: dict[Key, dict[str, Any]] = {}
    for key, last in last_fires(engine).items():
        out.setdefault(key, {"last_fire_time": None, "missed": 0, "missed_recent": []})["last_fire_time"] = (
            last
        )
    with engine.connect() as connection:
        counts = connection.execute(
            select(schedule_misses.c.runbook_id, schedule_misses.c.trigger_index, func.count()).group_by(
                schedule_misses.c.runbook_id, schedule_misses.c.trigger_index
            )
        )
        for runbook_id, index, count in counts:
            out.setdefault((runbook_id, index), {"last_fire_time": None, "missed": 0, "missed_recent": []})[
                "missed"
            ] = int(count)
        for key, entry in out.items():
            if not entry["missed"]:
                continue
            rows = connection.execute(
                select(schedule_misses.c.fire_time)
                .where(schedule_misses.c.runbook_id == key[0], schedule_misses.c.trigger_index == key[1])
                .order_by(schedule_misses.c.fire_time.desc())
                .limit(recent)
            )
            entry["missed_recent"] = [utc(r.fire_time) for r in rows]
    return out
