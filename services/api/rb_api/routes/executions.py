"""/api/v1/executions: list, detail, events, step logs, live SSE stream, cancel/pause/resume."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Body, Header, Path, Query
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse

from rb_api import audit, control, executions, long_poll, notifications
from rb_api.auth import Operator, Viewer
from rb_api.dbutil import in_thread
from rb_api.deps import ServicesDep
from rb_api.problems import ProblemError, problem_responses
from rb_api.reads import EXECUTION_STATUSES, TERMINAL_STATUSES, list_executions
from rb_api.response_models import (
    ControlAccepted,
    EventList,
    ExecutionDetail,
    ExecutionPage,
    StepLogList,
    answers,
)
from rb_api.scope import hidden_runbooks, require_execution, snapshot_of
from rb_api.streaming import SSE_HEADERS, ExecutionStream, parse_last_event_id
from rb_common.links import link_keys
from rb_common.links import verify as verify_link

router = APIRouter(prefix="/api/v1/executions", tags=["executions"])

ExecutionId = Annotated[str, Path(max_length=64, description="the execution's id")]
# 502: the recorded events cannot be folded (rb_api.executions.fold_events).
_PROBLEMS = problem_responses(400, 401, 403, 404, 409, 415, 422, 502, 503)


@router.get(
    "",
    summary="List executions, newest first",
    response_model=None,
    responses=answers(ExecutionPage) | _PROBLEMS,
)
async def list_all(
    svc: ServicesDep,
    who: Viewer,
    runbook_id: Annotated[str | None, Query(max_length=100)] = None,
    status: Annotated[str | None, Query(max_length=32, description=", ".join(EXECUTION_STATUSES))] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> dict[str, Any]:
    wanted = status.strip().upper() if status else None
    if wanted is not None and wanted not in EXECUTION_STATUSES:
        raise ProblemError(
            422,
            f"unknown status {status!r} (one of {', '.join(EXECUTION_STATUSES)})",
            slug="invalid-request",
            title="Invalid request",
            errors=[{"field": "query.status", "message": "unknown status"}],
        )
    hidden = await in_thread(hidden_runbooks, svc.engine, who)
    return await in_thread(
        list_executions,
        svc.engine,
        runbook_id=runbook_id,
        status=wanted,
        limit=limit,
        offset=offset,
        hidden_runbooks=hidden,
    )


@router.get(
    "/{execution_id}",
    summary="{id, runbook_id, runbook_version, status, started_at, completed_at, trigger, steps, kpis, parent, children}",
    response_model=None,
    responses=answers(ExecutionDetail) | _PROBLEMS,
)
async def get_one(
    execution_id: ExecutionId,
    svc: ServicesDep,
    who: Viewer,
    wait: Annotated[
        float,
        Query(
            ge=0,
            le=long_poll.MAX_WAIT,
            description="hold the answer until the execution has ended, at most this many seconds "
            "(a long poll: one request instead of polling)",
        ),
    ] = 0,
) -> Response:
    await require_execution(svc, who, execution_id)
    # Polled by clients following an execution: plain JSON values, dumped by orjson as they are
    # (no jsonable_encoder walk; the OpenAPI answer is declared above).
    found = await long_poll.finished_detail(svc, execution_id, wait)
    if wait > 0:  # it may have been unknown (visible) at the first check, and found since
        await require_execution(svc, who, execution_id)
    return Response(orjson.dumps(found), media_type="application/json")


@router.get(
    "/{execution_id}/events",
    summary="The recorded events, in order",
    response_model=None,
    responses=answers(EventList) | _PROBLEMS,
)
async def get_events(
    execution_id: ExecutionId,
    svc: ServicesDep,
    who: Viewer,
    after_seq: Annotated[int, Query(ge=0, le=2**31 - 1, description="only events after this seq")] = 0,
) -> dict[str, Any]:
    await require_execution(svc, who, execution_id)
    items = await executions.events_of(svc, execution_id, after_seq)
    return {"execution_id": execution_id, "items": items}


@router.get(
    "/{execution_id}/logs",
    summary="Step logs: inputs, outputs, errors per step",
    response_model=None,
    responses=answers(StepLogList) | _PROBLEMS,
)
async def get_logs(execution_id: ExecutionId, svc: ServicesDep, who: Viewer) -> dict[str, Any]:
    await require_execution(svc, who, execution_id)
    items = await executions.logs_of(svc, execution_id)
    return {"execution_id": execution_id, "items": items}


@router.get(
    "/{execution_id}/stream",
    summary="Server-Sent Events of the execution, live; ends after the terminal event",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}, **_PROBLEMS},
)
async def stream(
    execution_id: ExecutionId,
    svc: ServicesDep,
    who: Viewer,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=32)] = None,
) -> StreamingResponse:
    executions.check_id(execution_id)
    # A just-triggered execution may have no event yet: wait a little for its first one.
    known = await executions.recorded(svc, execution_id)
    if known:
        await require_execution(svc, who, execution_id)
    wait = 0.0 if known else svc.options.stream_wait_seconds
    try:
        opened = await ExecutionStream.open(svc, execution_id, wait)
    except Exception as exc:
        raise ProblemError(
            503,
            f"cannot subscribe to the execution on NATS ({type(exc).__name__})",
            slug="bus-unavailable",
            title="Message bus unavailable",
        ) from None
    if wait > 0 and opened.first is None:
        await opened.close()
        raise executions.missing(execution_id)
    if not known and not _first_visible(who, opened.first):
        await opened.close()
        raise executions.missing(execution_id)
    frames = opened.events(parse_last_event_id(last_event_id), svc.options.keepalive_seconds)
    return StreamingResponse(frames, media_type="text/event-stream", headers=SSE_HEADERS)


def _first_visible(who: Viewer, first: Any) -> bool:
    """Whether `who` may see the execution whose first message is `first` (team scope)."""
    if first is None or who.team_filter() is None:
        return True
    try:
        event = json.loads(first.data)
    except ValueError:
        return False
    return who.sees_team(snapshot_of(event)[1])


async def _control(
    svc: ServicesDep,
    execution_id: str,
    action: str,
    who: Operator,
    body: control.ControlBody | None,
    key: str | None,
) -> JSONResponse:
    await require_execution(svc, who, execution_id)
    detail = await executions.detail(svc, execution_id)  # 404 for unknown executions
    if detail["status"] in TERMINAL_STATUSES:
        raise ProblemError(
            409,
            f"execution {execution_id!r} already finished ({detail['status']}); nothing to {action}",
            slug="execution-finished",
            title="Execution already finished",
        )
    command = control.build_command(execution_id, action, who.actor, body)
    msg_id = f"{execution_id}:{action}:{key}" if key else None
    await control.publish_command(svc.bus, command, msg_id)
    return JSONResponse(
        {"execution_id": execution_id, "action": action, "command": command.type, "status": "ACCEPTED"},
        status_code=202,
        headers={"Location": f"/api/v1/executions/{execution_id}"},
    )


_CONTROLLED = answers(ControlAccepted, 202, location=True) | _PROBLEMS
_ControlBody = Annotated[control.ControlBody | None, Body()]
_Key = Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)]


@router.post(
    "/{execution_id}/cancel",
    status_code=202,
    summary="Request cancellation",
    response_model=None,
    responses=_CONTROLLED,
)
async def cancel(
    execution_id: ExecutionId, svc: ServicesDep, who: Operator, body: _ControlBody = None, key: _Key = None
) -> JSONResponse:
    return await _control(svc, execution_id, "cancel", who, body, key)


@router.post(
    "/{execution_id}/pause",
    status_code=202,
    summary="Pause (running steps finish)",
    response_model=None,
    responses=_CONTROLLED,
)
async def pause(
    execution_id: ExecutionId, svc: ServicesDep, who: Operator, body: _ControlBody = None, key: _Key = None
) -> JSONResponse:
    return await _control(svc, execution_id, "pause", who, body, key)


@router.post(
    "/{execution_id}/resume",
    status_code=202,
    summary="Resume a paused execution",
    response_model=None,
    responses=_CONTROLLED,
)
async def resume(
    execution_id: ExecutionId, svc: ServicesDep, who: Operator, body: _ControlBody = None, key: _Key = None
) -> JSONResponse:
    return await _control(svc, execution_id, "resume", who, body, key)


@router.post(
    "/{execution_id}/replay",
    summary="Replay the recorded events and compare, step by step",
    responses=_PROBLEMS,
)
async def replay(
    execution_id: ExecutionId,
    svc: ServicesDep,
    who: Operator,
    body: Annotated[
        dict[str, Any] | None, Body(description='optional {"against": runbook definition}')
    ] = None,
) -> dict[str, Any]:
    await require_execution(svc, who, execution_id)
    against = (body or {}).get("against")
    if against is not None and not isinstance(against, dict):
        raise ProblemError(422, "'against' must be a runbook definition object", slug="invalid-runbook")
    return await audit.replay_report(svc, execution_id, against)


@router.get(
    "/{execution_id}/audit",
    summary="Verify the hash chain; who, why, under which assumptions",
    responses=_PROBLEMS,
)
async def audit_execution(execution_id: ExecutionId, svc: ServicesDep, who: Viewer) -> dict[str, Any]:
    await require_execution(svc, who, execution_id)
    return await audit.audit_report(svc, execution_id)


@router.get(
    "/{execution_id}/notifications",
    summary="Each notification (event and channel): its status and every attempt's outcome",
    responses=_PROBLEMS,
)
async def get_notifications(execution_id: ExecutionId, svc: ServicesDep, who: Viewer) -> dict[str, Any]:
    await require_execution(svc, who, execution_id)
    items = await executions.events_of(svc, execution_id, 0)
    return {"execution_id": execution_id, "items": notifications.notifications(items)}


@router.get(
    "/{execution_id}/page",
    summary="The execution as a page for people, through a signed link that expires (no API key)",
    response_class=HTMLResponse,
    responses={200: {"content": {"text/html": {}}}, **problem_responses(403, 404, 422, 502)},
)
async def get_page(
    execution_id: ExecutionId,
    svc: ServicesDep,
    expires: Annotated[int, Query(ge=0, le=2**42)],
    sig: Annotated[str, Query(min_length=64, max_length=64, pattern=r"^[0-9a-f]{64}$")],
) -> HTMLResponse:
    keys = link_keys(svc.settings)
    if not keys:
        raise ProblemError(
            404, "execution pages are off (set RB_LINK_KEY or RB_MASTER_KEY)", slug="not-found"
        )
    refused = verify_link(execution_id, expires, sig, keys)
    if refused is not None:
        raise ProblemError(403, refused, slug="bad-link", title="Link refused")
    detail = await executions.detail(svc, execution_id)
    expires_at = datetime.fromtimestamp(expires, UTC).isoformat()
    return HTMLResponse(
        notifications.page(detail, expires_at),
        headers={"Cache-Control": "private, no-store", "Referrer-Policy": "no-referrer"},
    )
