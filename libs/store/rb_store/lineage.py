"""Sub-runbook lineage from the projection: an execution's parent and its children.

A child's `trigger` (kept in `runbook_executions.trigger`) is `{type: runbook, parent:
{execution_id, step_id}, depth, ...}`; the children of an execution are the rows whose trigger
names it as their parent.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, select

from rb_store.tables import runbook_executions


def parent_of(trigger: Any) -> dict[str, Any] | None:
    """`{execution_id, step_id, depth}` of a sub-runbook's run, None for a top-level one."""
    if not isinstance(trigger, dict) or trigger.get("type") != "runbook":
        return None
    parent = trigger.get("parent")
    if not isinstance(parent, dict):
        return None
    return {
        "execution_id": parent.get("execution_id"),
        "step_id": parent.get("step_id"),
        "depth": trigger.get("depth"),
    }


def child_executions(engine: Engine, execution_id: str) -> list[dict[str, Any]]:
    """`[{id, step_id, runbook_id, status}]` of the children the projection knows, by request time."""
    table = runbook_executions
    query = (
        select(table.c.id, table.c.runbook_id, table.c.status, table.c.trigger)
        .where(table.c.trigger[("parent", "execution_id")].as_string() == execution_id)
        .order_by(table.c.requested_at, table.c.id)
    )
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    return [
        {
            "id": row.id,
            "step_id": (parent_of(row.trigger) or {}).get("step_id"),
            "runbook_id": row.runbook_id,
            "status": row.status,
        }
        for row in rows
    ]


def lineage(engine: Engine, execution_id: str, trigger: Any) -> dict[str, Any]:
    """`{parent, children}` for an execution's detail."""
    return {"parent": parent_of(trigger), "children": child_executions(engine, execution_id)}
