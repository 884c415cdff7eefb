"""POST /api/v1/executions/{id}/steps/{step}/retry: run a failed step of a finished execution
again, with its dependants, as a continuation of the same event stream."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Path
from fastapi.responses import JSONResponse

from rb_api import control
from rb_api.auth import Operator
from rb_api.deps import ServicesDep
from rb_api.executions import check_id, missing, state_from_bus
from rb_api.problems import ProblemError, problem_responses
from rb_api.scope import require_execution
from rb_common.events import EventType
from rb_common.messages import ControlCommand
from rb_engine.coordinator.retries import refusal

router = APIRouter(prefix="/api/v1/executions", tags=["executions"])

_PROBLEMS = problem_responses(400, 401, 403, 404, 409, 415, 422, 503)


@router.post(
    "/{execution_id}/steps/{step_id}/retry",
    status_code=202,
    summary="Run a failed step of a FAILED execution again, with its dependants (the rest keep their outputs)",
    responses=_PROBLEMS,
)
async def retry_step(
    execution_id: Annotated[str, Path(max_length=64, description="the execution's id")],
    step_id: Annotated[str, Path(max_length=100, description="the id of the step that failed")],
    svc: ServicesDep,
    who: Operator,
    body: Annotated[control.ControlBody | None, Body()] = None,
) -> JSONResponse:
    check_id(execution_id)
    await require_execution(svc, who, execution_id)
    state = await state_from_bus(svc, execution_id)  # the record itself, not the projection
    if state is None:
        raise missing(execution_id)
    refused = refusal(state, step_id)
    if refused is not None:
        status, why = refused
        slug = "step-not-found" if status == 404 else "retry-refused"
        raise ProblemError(status, why, slug=slug, title="Retry refused" if status == 409 else None)
    data = {"step_id": step_id, "requested_via": "api"}
    if body is not None and body.reason:
        data["reason"] = body.reason
    command = ControlCommand(
        execution_id=execution_id, type=EventType.STEP_RETRY_REQUESTED.value, actor=who.actor, data=data
    )
    # One retry per failed attempt: a repeated request for the same failure is a duplicate.
    attempt = state.steps[step_id].attempt
    await control.publish_command(svc.bus, command, f"{execution_id}:retry:{step_id}:{attempt}")
    return JSONResponse(
        {"execution_id": execution_id, "step_id": step_id, "action": "retry", "status": "ACCEPTED"},
        status_code=202,
        headers={"Location": f"/api/v1/executions/{execution_id}"},
    )
