"""Cron schedules as the API shows them: approved runbooks' cron triggers, next fire times,
paused or not. The scheduler service reads the same registry and pause state."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, select

from rb_api.problems import ProblemError
from rb_common.cron import cron_trigger
from rb_store.recorder import upsert
from rb_store.refusals import refused_cron_fires
from rb_store.registry import approved, paused
from rb_store.schedules import fire_summary
from rb_store.tables import runbooks, schedule_state


def list_schedules(engine: Engine, now: datetime | None = None) -> list[dict[str, Any]]:
    now = now or datetime.now(UTC)
    stopped = paused(engine)
    fires = fire_summary(engine)
    entries = approved(engine)
    refused = refused_cron_fires(engine, [e.runbook.id for e in entries if any(t.cron for t in e.runbook.triggers)])
    out = []
    for entry in entries:
        for index, trigger in enumerate(entry.runbook.triggers):
            if not trigger.cron:
                continue
            is_paused = (entry.runbook.id, index) in stopped
            try:
                next_fire = cron_trigger(trigger.cron, trigger.timezone).get_next_fire_time(None, now)
            except ValueError:
                next_fire = None
            out.append(
                {
                    "runbook_id": entry.runbook.id,
                    "trigger_index": index,
                    "cron": trigger.cron,
                    "timezone": trigger.timezone,
                    "paused": is_paused,
                    "next_fire_time": None if is_paused or next_fire is None else next_fire.isoformat(),
                    "revision": entry.revision,
                    "team": entry.runbook.team,
                    **_fires(fires.get((entry.runbook.id, index))),
                    # Fires the executor refused (queue full, on_limit: reject): recorded, never run.
                    "refused_fires": len(refused.get((entry.runbook.id, index), [])),
                    "refused_recent": [str(t) for t in refused.get((entry.runbook.id, index), [])[:10]],
                }
            )
    return out


def _fires(summary: dict[str, Any] | None) -> dict[str, Any]:
    """The last fire time, and the fires missed beyond RB_SCHEDULER_MISFIRE_GRACE (never run)."""
    summary = summary or {}
    last = summary.get("last_fire_time")
    return {
        "last_fire_time": last.isoformat() if last else None,
        "missed_fires": summary.get("missed", 0),
        "missed_recent": [t.isoformat() for t in summary.get("missed_recent", [])],
    }


def set_paused(engine: Engine, runbook_id: str, index: int, pause: bool, actor: str) -> dict[str, Any]:
    with engine.begin() as connection:
        if connection.execute(select(runbooks.c.id).where(runbooks.c.id == runbook_id)).first() is None:
            raise ProblemError(404, f"no runbook {runbook_id!r}", slug="not-found")
    schedules = [s for s in list_schedules(engine) if s["runbook_id"] == runbook_id]
    if not any(s["trigger_index"] == index for s in schedules):
        raise ProblemError(
            404, f"runbook {runbook_id!r} has no approved cron trigger #{index}", slug="not-found"
        )
    with engine.begin() as connection:
        upsert(
            connection,
            schedule_state,
            [
                {
                    "runbook_id": runbook_id,
                    "trigger_index": index,
                    "paused": pause,
                    "updated_at": datetime.now(UTC),
                    "updated_by": actor,
                }
            ],
            ["runbook_id", "trigger_index"],
        )
    return next(
        s for s in list_schedules(engine) if s["runbook_id"] == runbook_id and s["trigger_index"] == index
    )
