"""Execution state -> rows of `runbook_executions` and `runbook_step_logs`.

The coordinator's fold (`rb_engine.coordinator.evolve`) is the one definition of execution and
step statuses; nothing here re-derives a status, it only copies fields out of the folded state.
The few facts the fold does not keep are captured from the events alongside it by `advance`:
who requested the execution, its legal basis, and the error of every failed attempt (the fold
keeps only the last one).

Pure: no I/O, no clock. The recorder calls `advance` once per event and writes the rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from pydantic_core import to_jsonable_python

from rb_common.events import Event
from rb_common.payloads import ExecutionAborted, ExecutionRequested, StepFailed
from rb_common.upcast import upcast
from rb_engine.coordinator import ExecutionState, evolve


@dataclass(frozen=True)
class Projection:
    """The folded state of one execution plus what the projection needs beyond the fold."""

    state: ExecutionState = field(default_factory=ExecutionState)
    actor: str | None = None
    legal_basis: str | None = None
    # step id -> the error of each failed main-phase attempt, oldest first.
    errors: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # Events the fold could not apply (a malformed event must not wedge the recorder).
    problems: tuple[str, ...] = ()
    # The executor refused the start (execution.aborted {refused: true}): not approved, over
    # its runbook's limit with on_limit: reject, or the queue was full.
    refused: bool = False

    @property
    def seq(self) -> int:
        return self.state.seq

    @property
    def requested(self) -> bool:
        return self.state.runbook is not None


def advance(projection: Projection, event: Event) -> Projection:
    """Fold one event. An event the fold rejects is noted in `problems` and otherwise skipped
    (its seq still counts), so one bad event cannot stop the record of the rest. The event is
    read in the current schema version (upcast); the recorder stores it as recorded."""
    try:
        event = upcast(event)
        state = evolve(projection.state, event)
        payload = event.payload  # parsed by the fold already
    except Exception as exc:
        problem = f"seq {event.seq} ({event.type.value}): {type(exc).__name__}: {exc}"
        return replace(
            projection,
            state=replace(projection.state, seq=event.seq, now=event.time),
            problems=(*projection.problems, problem),
        )
    changes: dict[str, Any] = {"state": state}
    if isinstance(payload, ExecutionRequested):
        changes["actor"] = payload.actor or event.actor
        runbook_basis = state.runbook.legal_basis if state.runbook is not None else None
        changes["legal_basis"] = payload.legal_basis or runbook_basis
    elif isinstance(payload, ExecutionAborted) and payload.refused:
        changes["refused"] = True
    elif isinstance(payload, StepFailed) and not payload.rollback:
        step_id = payload.step_id
        previous = projection.errors.get(step_id, ())
        changes["errors"] = {**projection.errors, step_id: (*previous, payload.error or "")}
    return replace(projection, **changes)


def project(events: Iterable[Event], start: Projection | None = None) -> Projection:
    projection = start or Projection()
    for event in events:
        projection = advance(projection, event)
    return projection


def changed_steps(before: Projection, after: Projection) -> list[str]:
    """Steps whose row differs between two projections (evolve replaces only the steps it
    changes, so identity is enough)."""
    out = []
    for step_id, step in after.state.steps.items():
        if before.state.steps.get(step_id) is not step or before.errors.get(step_id) != after.errors.get(
            step_id
        ):
            out.append(step_id)
    return out


def utc(value: datetime | None) -> datetime | None:
    """Aware UTC datetimes only: SQLite drops the offset, so everything is stored as UTC."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _json(value: Any) -> Any:
    return to_jsonable_python(value, fallback=str)


def step_order(state: ExecutionState) -> list[str]:
    """Steps in the order the definition declares them (the fold keeps topological order)."""
    if state.runbook is None:
        return list(state.order)
    return [step.id for step in state.runbook.steps]


def execution_row(projection: Projection) -> dict[str, Any] | None:
    """The `runbook_executions` row, or None before `execution.requested`."""
    state = projection.state
    runbook = state.runbook
    if runbook is None:
        return None
    rollback_errors = {
        sid: step.rollback_error for sid, step in state.steps.items() if step.rollback_error is not None
    }
    metadata = {
        "legal_basis": projection.legal_basis,
        "params": state.params,
        "assumptions": state.assumptions,
        "runbook_name": runbook.name,
        "step_order": step_order(state),
        "rollback_errors": rollback_errors,
        # Steps whose current attempt was run by more than one worker (one died mid-step).
        "deliveries": {sid: step.deliveries for sid, step in state.steps.items() if step.deliveries > 1},
        "projection_errors": list(projection.problems),
        **({"refused": True} if projection.refused else {}),
    }
    return {
        "id": state.execution_id,
        "runbook_id": runbook.id,
        "runbook_version": runbook.version,
        "started_at": utc(state.started_at),
        "completed_at": utc(state.completed_at),
        "requested_at": utc(state.requested_at),
        "status": state.status,
        "actor_id": projection.actor,
        "trigger": _json(state.trigger),
        "kpis": _json(state.kpis),
        "reason": state.reason,
        "last_seq": state.seq,
        "metadata": _json(metadata),
    }


def step_rows(projection: Projection, step_ids: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """`runbook_step_logs` rows for `step_ids` (default: every step), in definition order."""
    state = projection.state
    wanted = set(state.steps) if step_ids is None else set(step_ids)
    rows = []
    for step_id in step_order(state):
        if step_id not in wanted or step_id not in state.steps:
            continue
        step = state.steps[step_id]
        errors = list(projection.errors.get(step_id, ()))
        if not errors and step.error:
            errors = [step.error]
        rows.append(
            {
                "execution_id": state.execution_id,
                "step_id": step_id,
                "started_at": utc(step.started_at),
                "completed_at": utc(step.completed_at),
                "status": step.status,
                "attempts": step.attempt,
                "inputs": _json(step.inputs),
                "outputs": _json(step.outputs),
                "errors": errors,
                "rollback_status": step.rollback_status,
            }
        )
    return rows
