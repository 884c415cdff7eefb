"""Replay and tamper evidence over recorded executions, for REST and GraphQL alike."""

from __future__ import annotations

from typing import Any

from rb_api.dbutil import in_thread
from rb_api.deps import Services
from rb_api.executions import bus_events, check_id, missing
from rb_api.problems import ProblemError
from rb_api.reads import recorded_events
from rb_common.audit import audit_record, verify_chain
from rb_common.events import Event
from rb_common.model import Runbook
from rb_engine.replay import Replayer
from rb_engine.result import canonical_result
from rb_engine.runner import PluginExecutor
from rb_engine.steps.registry import default_registry


async def recorded(svc: Services, execution_id: str) -> tuple[list[Event], str]:
    """The execution's events: the recorder's table first, else its JetStream subject."""
    check_id(execution_id)
    rows = await in_thread(recorded_events, svc.engine, execution_id)
    if rows:
        return [Event.model_validate(row) for row in rows], "database"
    events = await bus_events(svc, execution_id)
    if not events:
        raise missing(execution_id)
    return events, "nats"


async def replay_report(
    svc: Services, execution_id: str, against: dict[str, Any] | None = None
) -> dict[str, Any]:
    events, source = await recorded(svc, execution_id)
    if against is not None:
        try:
            runbook = Runbook.model_validate(against)
        except Exception as exc:
            raise ProblemError(
                422, f"the runbook to replay against is invalid: {exc}", slug="invalid-runbook"
            ) from None
        first = events[0]
        events = [
            first.model_copy(update={"data": {**first.data, "runbook": runbook.snapshot()}}),
            *events[1:],
        ]
    try:
        report = await Replayer(PluginExecutor(default_registry()), svc.settings).replay(events)
    except ValueError as exc:
        raise ProblemError(
            422, f"execution {execution_id!r} cannot be replayed: {exc}", slug="unreplayable"
        ) from None
    return {
        "execution_id": execution_id,
        "source": source,
        "verified": report.verified,
        "deviations": [
            {"step": d.step, "field": d.field, "recorded": d.recorded, "replayed": d.replayed, "seq": d.seq}
            for d in report.deviations
        ],
        "result": canonical_result(report.state),
    }


async def audit_report(svc: Services, execution_id: str) -> dict[str, Any]:
    events, source = await recorded(svc, execution_id)
    problems = verify_chain(events)
    return {
        **audit_record(events),
        "source": source,
        "intact": not problems,
        "problems": [{"seq": p.seq, "event_id": p.event_id, "problem": p.problem} for p in problems],
    }
