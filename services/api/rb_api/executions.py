"""Executions as the API shows them: the projection first, the JetStream subject as fallback."""

from __future__ import annotations

import logging
from typing import Any

from rb_api.dbutil import in_thread
from rb_api.deps import Services
from rb_api.problems import ProblemError, not_found
from rb_api.reads import (
    event_dicts,
    logs_from_state,
    projected_execution,
    recorded_events,
    render_state,
    step_logs,
    valid_execution_id,
)
from rb_common.bus import read_execution
from rb_common.events import Event
from rb_engine.coordinator import ExecutionState, fold
from rb_store.lineage import detail as lineage_detail
from rb_store.lineage import lineage

log = logging.getLogger("rb_api")


def missing(execution_id: str) -> ProblemError:
    return not_found(f"execution {execution_id!r}", "execution-not-found")


def check_id(execution_id: str) -> None:
    if not valid_execution_id(execution_id):
        raise missing(execution_id)


async def recorded(svc: Services, execution_id: str) -> bool:
    """Whether the execution exists: projected by the recorder, or on the bus (not yet projected)."""
    if await in_thread(projected_execution, svc.engine, execution_id) is not None:
        return True
    try:
        await svc.bus.js.get_last_msg(svc.bus.names.events_stream, svc.bus.names.exec_subject(execution_id))
    except Exception:
        return False
    return True


async def bus_events(svc: Services, execution_id: str) -> list[Event]:
    """The execution's events from its subject ([] if it has none)."""
    try:
        recorded = await read_execution(svc.bus, execution_id, timeout=svc.options.bus_read_timeout)
    except Exception as exc:
        log.warning("cannot read execution %s from NATS: %s", execution_id, exc)
        raise ProblemError(
            503,
            f"the execution record could not be read from NATS ({type(exc).__name__})",
            slug="bus-unavailable",
            title="Message bus unavailable",
            headers={"Retry-After": "1"},
        ) from None
    return [event for event, _ in recorded]


def fold_events(execution_id: str, recorded: list[Event]) -> ExecutionState:
    try:
        return fold(recorded)
    except Exception as exc:
        log.warning("cannot fold execution %s: %s", execution_id, exc)
        raise ProblemError(
            502,
            f"the recorded events of execution {execution_id!r} cannot be folded: {type(exc).__name__}",
            slug="unreadable-execution",
        ) from None


async def state_from_bus(svc: Services, execution_id: str) -> ExecutionState | None:
    recorded = await bus_events(svc, execution_id)
    return fold_events(execution_id, recorded) if recorded else None


async def detail(svc: Services, execution_id: str) -> dict[str, Any]:
    check_id(execution_id)
    # The projection with the sub-runbook lineage (the parent from the trigger, the children the
    # projection knows), in one trip to the thread pool and one connection.
    projected = await in_thread(lineage_detail, svc.engine, execution_id)
    if projected is not None:
        return projected
    state = await state_from_bus(svc, execution_id)
    if state is None:
        raise missing(execution_id)
    found = render_state(state)
    return {**found, **await in_thread(lineage, svc.engine, execution_id, found.get("trigger"))}


async def events_of(svc: Services, execution_id: str, after_seq: int) -> list[dict[str, Any]]:
    check_id(execution_id)
    found = await in_thread(recorded_events, svc.engine, execution_id, after_seq)
    if found is not None:
        return found
    recorded = await bus_events(svc, execution_id)
    if not recorded:
        raise missing(execution_id)
    return event_dicts([e for e in recorded if e.seq > after_seq])


async def logs_of(svc: Services, execution_id: str) -> list[dict[str, Any]]:
    check_id(execution_id)
    found = await in_thread(step_logs, svc.engine, execution_id)
    if found is not None:
        return found
    state = await state_from_bus(svc, execution_id)
    if state is None:
        raise missing(execution_id)
    return logs_from_state(state)
