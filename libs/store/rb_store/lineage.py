"""Sub-runbook lineage from the projection: an execution's parent and its children.

A child's `trigger` (kept in `runbook_executions.trigger`) is `{type: runbook, parent:
{execution_id, step_id}, depth, ...}`; the children of an execution are the rows whose trigger
names it as their parent.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, select

from rb_store.queries import execution_row
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


# How much earlier than its parent a child may look requested: the executors that record them may
# run on hosts whose clocks differ a little.
CLOCK_SKEW = timedelta(minutes=5)


# Built once (the detail of every execution reads them).
_EXECUTIONS = runbook_executions
_CHILDREN = (
    select(_EXECUTIONS.c.id, _EXECUTIONS.c.runbook_id, _EXECUTIONS.c.status, _EXECUTIONS.c.trigger)
    .where(_EXECUTIONS.c.trigger[("parent", "execution_id")].as_string() == bindparam("parent_id"))
    .order_by(_EXECUTIONS.c.requested_at, _EXECUTIONS.c.id)
)
_CHILDREN_SINCE = _CHILDREN.where(_EXECUTIONS.c.requested_at >= bindparam("since"))


def child_executions(
    engine: Engine | Connection, execution_id: str, requested_at: datetime | None = None
) -> list[dict[str, Any]]:
    """`[{id, step_id, runbook_id, status}]` of the children the projection knows, by request time.

    With the parent's `requested_at`, only executions requested since then (less CLOCK_SKEW) are
    looked at, through the index on `requested_at`: a child is triggered by a step of its running
    parent. Without it, every execution's trigger is read."""
    params: dict[str, Any] = {"parent_id": execution_id}
    if requested_at is None:
        query = _CHILDREN
    else:
        query = _CHILDREN_SINCE
        params["since"] = requested_at - CLOCK_SKEW
    if isinstance(engine, Connection):
        rows = engine.execute(query, params).all()
    else:
        with engine.connect() as connection:
            rows = connection.execute(query, params).all()
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


def detail(engine: Engine, execution_id: str) -> dict[str, Any] | None:
    """The projected execution (rb_store.queries.get_execution) with its `{parent, children}`,
    on one connection; None if the recorder has no row yet."""
    with engine.connect() as connection:
        found = execution_row(connection, execution_id)
        if found is None:
            return None
        execution, requested_at = found
        children = child_executions(connection, execution_id, requested_at)
    return {**execution, "parent": parent_of(execution.get("trigger")), "children": children}
