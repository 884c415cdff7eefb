"""Read side for the API: executions, their steps, events and step logs, as plain JSON dicts.

Datetimes are ISO 8601 strings in UTC; unknown executions give None / [].
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, RowMapping, bindparam, func, select

from rb_store.projection import utc
from rb_store.tables import events, runbook_executions, runbook_step_logs


def iso(value: datetime | None) -> str | None:
    value = utc(value)
    return None if value is None else value.isoformat()


def _summary(row: RowMapping) -> dict[str, Any]:
    return {
        "id": row["id"],
        "runbook_id": row["runbook_id"],
        "runbook_version": row["runbook_version"],
        "status": row["status"],
        "requested_at": iso(row["requested_at"]),
        "started_at": iso(row["started_at"]),
        "completed_at": iso(row["completed_at"]),
        "actor_id": row["actor_id"],
        "trigger": row["trigger"],
        "reason": row["reason"],
    }


def list_executions(
    engine: Engine,
    runbook_id: str | None = None,
    status: str | None = None,
    limit: int = 50,
    offset: int = 0,
    exclude_runbooks: Collection[str] = (),
) -> tuple[list[dict[str, Any]], int]:
    """A page of execution summaries, newest first, and the total matching count; executions of
    `exclude_runbooks` (runbooks the caller may not see) are left out."""
    where = []
    if runbook_id is not None:
        where.append(runbook_executions.c.runbook_id == runbook_id)
    if exclude_runbooks:
        where.append(runbook_executions.c.runbook_id.not_in(sorted(exclude_runbooks)))
    if status is not None:
        where.append(runbook_executions.c.status == status.upper())
    page = (
        select(runbook_executions)
        .where(*where)
        .order_by(runbook_executions.c.requested_at.desc(), runbook_executions.c.id)
        .limit(max(0, limit))
        .offset(max(0, offset))
    )
    count = select(func.count()).select_from(runbook_executions).where(*where)
    with engine.connect() as connection:
        total = int(connection.scalar(count) or 0)
        items = [_summary(row) for row in connection.execute(page).mappings()]
    return items, total


def _ordered(step_rows: list[RowMapping], order: list[str]) -> list[RowMapping]:
    """Step rows in definition order (rows not named in `order` last, by id)."""
    position = {sid: i for i, sid in enumerate(order)}
    return sorted(step_rows, key=lambda r: (position.get(r["step_id"], len(position)), r["step_id"]))


def _last_error(row: RowMapping) -> str | None:
    """The step's current error as the fold has it: the last attempt's, unless it succeeded."""
    errors = row["errors"] or []
    if row["status"] == "SUCCEEDED" or not errors:
        return None
    return str(errors[-1])


# Built once (an execution's detail is read on every poll of it).
_EXECUTION = select(runbook_executions).where(runbook_executions.c.id == bindparam("execution_id"))
_STEPS = select(runbook_step_logs).where(runbook_step_logs.c.execution_id == bindparam("execution_id"))


def _steps(connection: Connection, execution_id: str, metadata: dict[str, Any] | None) -> list[RowMapping]:
    rows = list(
        connection.execute(_STEPS, {"execution_id": execution_id}).mappings()
    )
    return _ordered(rows, list((metadata or {}).get("step_order") or []))


def get_execution(engine: Engine, execution_id: str) -> dict[str, Any] | None:
    """`{id, runbook_id, runbook_version, status, started_at, completed_at, trigger,
    steps: [{id, status, attempts, deliveries, started_at, completed_at, outputs, error}], kpis}`."""
    with engine.connect() as connection:
        found = execution_row(connection, execution_id)
    return None if found is None else found[0]


def execution_row(connection: Connection, execution_id: str) -> tuple[dict[str, Any], datetime | None] | None:
    """get_execution's answer and the execution's requested_at, on an open connection."""
    row = (
        connection.execute(_EXECUTION, {"execution_id": execution_id})
        .mappings()
        .first()
    )
    if row is None:
        return None
    step_rows = _steps(connection, execution_id, row["metadata"])
    deliveries = (row["metadata"] or {}).get("deliveries") or {}
    detail = {
        "id": row["id"],
        "runbook_id": row["runbook_id"],
        "runbook_version": row["runbook_version"],
        "status": row["status"],
        "started_at": iso(row["started_at"]),
        "completed_at": iso(row["completed_at"]),
        "trigger": row["trigger"],
        "steps": [
            {
                "id": s["step_id"],
                "status": s["status"],
                "attempts": s["attempts"],
                "deliveries": deliveries.get(s["step_id"], 1),
                "started_at": iso(s["started_at"]),
                "completed_at": iso(s["completed_at"]),
                "outputs": s["outputs"],
                "error": _last_error(s),
            }
            for s in step_rows
        ],
        "kpis": row["kpis"],
    }
    return detail, utc(row["requested_at"])


def get_events(engine: Engine, execution_id: str, after: int = 0) -> list[dict[str, Any]]:
    """The execution's events (as recorded, JSON form) in seq order; `after` skips seqs <= it."""
    query = (
        select(events.c.event)
        .where(events.c.execution_id == execution_id, events.c.seq > after)
        .order_by(events.c.seq)
    )
    with engine.connect() as connection:
        return [dict(row.event) for row in connection.execute(query)]


def get_step_logs(engine: Engine, execution_id: str) -> list[dict[str, Any]]:
    """Every `runbook_step_logs` row of the execution, in definition order."""
    with engine.connect() as connection:
        metadata = connection.scalar(
            select(runbook_executions.c.metadata).where(runbook_executions.c.id == execution_id)
        )
        rows = _steps(connection, execution_id, metadata)
    return [
        {
            "execution_id": r["execution_id"],
            "step_id": r["step_id"],
            "status": r["status"],
            "attempts": r["attempts"],
            "started_at": iso(r["started_at"]),
            "completed_at": iso(r["completed_at"]),
            "inputs": r["inputs"],
            "outputs": r["outputs"],
            "errors": r["errors"] or [],
            "rollback_status": r["rollback_status"],
        }
        for r in rows
    ]
