"""Starts the executor refused after their trigger was accepted (a cron fire or an alert that
got its 202): the `runbook_executions` rows the recorder marked `metadata.refused`, for the
API's /alerts and /schedules."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select

from rb_common.statuses import ExecutionStatus
from rb_store.tables import runbook_executions

Key = tuple[str, int]


def _refused_rows(engine: Engine, *where: Any) -> list[Any]:
    query = select(
        runbook_executions.c.id,
        runbook_executions.c.runbook_id,
        runbook_executions.c.trigger,
        runbook_executions.c.reason,
        runbook_executions.c.metadata,
    ).where(runbook_executions.c.status == ExecutionStatus.ABORTED, *where)
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    return [row for row in rows if isinstance(row.metadata, dict) and row.metadata.get("refused") is True]


def refused_executions(engine: Engine, execution_ids: Collection[str]) -> dict[str, str]:
    """Of these executions, the refused ones: id -> the reason."""
    if not execution_ids:
        return {}
    rows = _refused_rows(engine, runbook_executions.c.id.in_(sorted(execution_ids)))
    return {row.id: row.reason or "refused" for row in rows}


def refused_cron_fires(engine: Engine, runbook_ids: Collection[str]) -> dict[Key, list[datetime | str]]:
    """Per (runbook, trigger index): the fire times of cron fires the executor refused, newest
    first."""
    if not runbook_ids:
        return {}
    out: dict[Key, list[Any]] = {}
    for row in _refused_rows(engine, runbook_executions.c.runbook_id.in_(sorted(runbook_ids))):
        trigger = row.trigger if isinstance(row.trigger, dict) else {}
        if trigger.get("type") != "cron" or not isinstance(trigger.get("index"), int):
            continue
        out.setdefault((row.runbook_id, trigger["index"]), []).append(trigger.get("fire_time"))
    for fires in out.values():
        fires.sort(key=str, reverse=True)
    return out
