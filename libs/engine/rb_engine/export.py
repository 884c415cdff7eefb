"""Fixtures from reality: turn a recorded execution into a fixture and its expected result."""

from __future__ import annotations

from typing import Any

from rb_common.events import Event
from rb_common.expressions import expressions_in, references
from rb_common.model import Runbook
from rb_common.payloads import EventReceived, ExecutionRequested, StepFailed, StepScheduled, StepSucceeded
from rb_common.step_specs import SPECS
from rb_engine.coordinator import ExecutionState, fold
from rb_engine.result import canonical_result


def export_fixture(events: list[Event]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(fixture, expected canonical result) for `rb test`: every external step is stubbed with
    what it returned (or the error it raised), attempt by attempt."""
    requested = events[0].payload_as(ExecutionRequested)
    runbook = Runbook.model_validate(requested.runbook)
    state = fold(events)
    scheduled: dict[tuple[str, str, int], str] = {}
    stubs: dict[str, list[dict[str, Any]]] = {}
    received: dict[str, Any] = {}  # wait_for_event steps: the data of the event each received
    for event in events:
        data = event.payload
        if isinstance(data, EventReceived):
            received[data.step_id] = data.data
            continue
        if isinstance(data, StepScheduled):
            scheduled[(data.step_id, data.phase, data.attempt)] = data.step_type
            continue
        if not isinstance(data, StepSucceeded | StepFailed) or (
            isinstance(data, StepFailed) and data.cancelled
        ):
            continue
        phase = data.phase
        step_type = scheduled.get((data.step_id, phase, data.attempt))
        spec = SPECS.get(step_type or "")
        if step_type is None or (spec is not None and not spec.external):
            continue
        key = data.step_id if phase == "main" else f"{data.step_id}.{phase}"
        if isinstance(data, StepSucceeded):
            stub: dict[str, Any] = {"result": data.result}
            meta = data.meta
        else:
            stub = {"error": data.error, "retryable": True if data.retryable is None else data.retryable}
            meta = data.model_extra.get("meta") if data.model_extra else None
        if meta:
            stub["meta"] = meta
        stubs.setdefault(key, []).append(stub)
    secrets = sorted(
        {
            ref[1]
            for body in expressions_in(requested.runbook)
            for ref in references(body)
            if ref[0] == "secrets" and len(ref) > 1
        }
    )
    fixture: dict[str, Any] = {
        "params": requested.params,
        "env": requested.env,
        # Secret values are never recorded: placeholders keep expressions resolvable.
        "secrets": {name: f"exported-placeholder-{name.lower()}" for name in secrets},
        "assumptions": requested.facts,
        "trigger": requested.trigger,
        "clock": events[0].time.isoformat(),
        "steps": {key: attempts[0] if len(attempts) == 1 else attempts for key, attempts in stubs.items()},
        "approvals": approval_scripts(state),
        **({"events": received} if received else {}),
        "expect": {
            # Plain strings (not the StrEnum members): the fixture is written as YAML.
            "status": str(state.status),
            "steps": {
                sid: {"status": str(s.status), "attempts": s.attempt} for sid, s in state.steps.items()
            },
        },
    }
    _ = runbook  # validated above: an unreadable definition fails the export, not the test
    return fixture, canonical_result(state)


def approval_scripts(state: ExecutionState) -> dict[str, dict[str, Any]]:
    """Who decided each approval step, as a fixture scripts it (`approve`, `reject`, or
    `timeout: true` when nobody decided)."""
    scripts: dict[str, dict[str, Any]] = {}
    for sid, approval in state.approvals.items():
        rejection = approval.rejection
        chosen = [d for d in approval.decisions if d.decision == "approve"]
        if rejection is not None:
            script: dict[str, Any] = {"reject": rejection.actor}
            comment = rejection.comment
        elif chosen:
            names = [d.actor for d in chosen]
            script = {"approve": names[0] if len(names) == 1 else names}
            comment = next((d.comment for d in chosen if d.comment), None)
        else:
            script, comment = {"timeout": True}, None
        if comment:
            script["comment"] = comment
        scripts[sid] = script
    return scripts
