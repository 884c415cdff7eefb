"""Read models of executions: the recorder's projection (`rb_store.queries`), or the JetStream
subject folded with the coordinator when the projection has not caught up yet.

Both sources give one shape (the recorder's projection is the same fold, written to tables):

    {id, runbook_id, runbook_version, status, started_at, completed_at, trigger,
     steps: [{id, status, attempts, deliveries, started_at, completed_at, outputs, error}], kpis}

`deliveries`: how many times workers were handed the step's current attempt (1; more when a
worker died mid-step and another ran the attempt again).
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Any

from sqlalchemy import Engine, bindparam, select

from rb_api.dbutil import iso
from rb_common.events import Event
from rb_common.statuses import STORED_EXECUTION, TERMINAL_EXECUTION, ExecutionStatus
from rb_engine.coordinator import ExecutionState
from rb_store import queries
from rb_store.tables import runbook_executions

EXECUTION_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# The coordinator's own statuses (rb_common.statuses): every one an execution is stored with.
EXECUTION_STATUSES: tuple[ExecutionStatus, ...] = STORED_EXECUTION
TERMINAL_STATUSES = TERMINAL_EXECUTION


def valid_execution_id(execution_id: str) -> bool:
    """Only ids that are safe as one NATS subject token (no '.', '*', '>' or spaces)."""
    return bool(EXECUTION_ID.match(execution_id))


# -- the projection ------------------------------------------------------------------------------


def _projected(engine: Engine, execution_id: str) -> bool:
    with engine.connect() as conn:
        found = conn.execute(
            select(runbook_executions.c.id).where(runbook_executions.c.id == execution_id)
        ).first()
    return found is not None


# Built once: a long poll reads it every few hundred ms.
_STATUS = select(runbook_executions.c.status).where(runbook_executions.c.id == bindparam("execution_id"))


def projected_status(engine: Engine, execution_id: str) -> str | None:
    """The projected execution's status alone (None: no row yet): what a long poll looks at
    until the execution has ended, one indexed column instead of the whole detail."""
    with engine.connect() as conn:
        return conn.execute(_STATUS, {"execution_id": execution_id}).scalar()


def list_executions(
    engine: Engine,
    *,
    runbook_id: str | None,
    status: str | None,
    limit: int,
    offset: int,
    hidden_runbooks: Collection[str] = (),
) -> dict[str, Any]:
    items, total = queries.list_executions(
        engine,
        runbook_id=runbook_id,
        status=status,
        limit=limit,
        offset=offset,
        exclude_runbooks=hidden_runbooks,
    )
    return {"items": items, "total": total, "limit": limit, "offset": offset}


def projected_execution(engine: Engine, execution_id: str) -> dict[str, Any] | None:
    """The execution from the projection tables, or None if the recorder has no row yet."""
    return queries.get_execution(engine, execution_id)


def step_logs(engine: Engine, execution_id: str) -> list[dict[str, Any]] | None:
    """Step log rows, or None if the projection knows nothing of the execution."""
    if not _projected(engine, execution_id):
        return None
    return queries.get_step_logs(engine, execution_id)


def recorded_events(engine: Engine, execution_id: str, after_seq: int = 0) -> list[dict[str, Any]] | None:
    """Events from the events table in order, or None if it holds none of this execution."""
    found = queries.get_events(engine, execution_id, after_seq)
    if found:
        return found
    return [] if _projected(engine, execution_id) else None


# -- the fold of the JetStream subject ------------------------------------------------------------


def _ordered(state: ExecutionState) -> list[Any]:
    order = [s.id for s in state.runbook.steps] if state.runbook else list(state.order)
    return [state.steps[sid] for sid in order if sid in state.steps]


def render_state(state: ExecutionState) -> dict[str, Any]:
    runbook = state.runbook
    return {
        "id": state.execution_id,
        "runbook_id": runbook.id if runbook else None,
        "runbook_version": runbook.version if runbook else None,
        "status": state.status,
        "started_at": iso(state.started_at),
        "completed_at": iso(state.completed_at),
        "trigger": state.trigger,
        "steps": [
            {
                "id": s.id,
                "status": s.status,
                "attempts": s.attempt,
                "deliveries": s.deliveries,
                "started_at": iso(s.started_at),
                "completed_at": iso(s.completed_at),
                "outputs": s.outputs,
                "error": s.error,
            }
            for s in _ordered(state)
        ],
        "kpis": state.kpis,
    }


def logs_from_state(state: ExecutionState) -> list[dict[str, Any]]:
    return [
        {
            "execution_id": state.execution_id,
            "step_id": s.id,
            "status": s.status,
            "attempts": s.attempt,
            "started_at": iso(s.started_at),
            "completed_at": iso(s.completed_at),
            "inputs": s.inputs,
            "outputs": s.outputs,
            "errors": [s.error] if s.error else [],
            "rollback_status": s.rollback_status,
        }
        for s in _ordered(state)
    ]


def event_dicts(recorded: list[Event]) -> list[dict[str, Any]]:
    return [e.model_dump(mode="json") for e in recorded]
