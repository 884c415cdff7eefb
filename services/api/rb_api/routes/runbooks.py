"""/api/v1/runbooks: the registry (create, revise, list, versions, rollback, lifecycle) and execute."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Header, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from rb_api import registry, triggering
from rb_api.auth import Admin, Author, Operator, Viewer
from rb_api.dbutil import in_thread
from rb_api.definitions import REQUEST_BODY_DOC, parse_submission
from rb_api.deps import ServicesDep
from rb_api.problems import not_found, problem_responses
from rb_api.response_models import Queued, RegistryChange, RunbookDetail, RunbookPage, answers
from rb_api.scope import require_runbook, require_team_member, visible_clause
from rb_common.identity import SYSTEM_KEY_NAME, Identity
from rb_common.model import ID_PATTERN
from rb_common.registry_events import announce
from rb_common.statuses import ExecutionStatus

router = APIRouter(prefix="/api/v1/runbooks", tags=["runbooks"])
_RUNBOOK_ID = re.compile(ID_PATTERN)

RunbookId = Annotated[str, Path(max_length=100, description="the runbook's id")]
Revision = Annotated[int, Path(ge=1, le=2**31 - 1)]
_PROBLEMS = problem_responses(400, 401, 403, 404, 409, 413, 415, 422)


class RollbackBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    revision: int = Field(ge=1, le=2**31 - 1, description="the revision to make current again")


def _location(runbook_id: str) -> dict[str, str]:
    return {"Location": f"/api/v1/runbooks/{runbook_id}"}


async def _announce(svc: ServicesDep, result: dict[str, Any], change: str, actor: str) -> dict[str, Any]:
    """Tell the scheduler (after the commit): registry changes reach it as events, so an alert
    posted right after an approval is matched against the approved runbook."""
    await announce(
        svc.bus,
        result["id"],
        change,
        revision=result.get("revision"),
        status=result.get("status"),
        actor=actor,
    )
    return result


@router.post(
    "",
    status_code=201,
    summary="Register a runbook (YAML or JSON body); 201 {id, revision, status}",
    openapi_extra=REQUEST_BODY_DOC,
    response_model=None,
    responses=answers(RegistryChange, 201, location=True) | _PROBLEMS,
)
async def create_runbook(request: Request, svc: ServicesDep, who: Author) -> JSONResponse:
    sub = await in_thread(parse_submission, await request.body(), request.headers.get("content-type"))
    require_team_member(who, sub.runbook.team)
    result = await in_thread(registry.create, svc.engine, sub, who.actor)
    await _announce(svc, result, "created", who.actor)
    return JSONResponse(result, status_code=201, headers=_location(sub.runbook.id))


@router.put(
    "/{runbook_id}",
    summary="New revision of a runbook (same body as POST); unchanged bodies keep the revision",
    openapi_extra=REQUEST_BODY_DOC,
    response_model=None,
    responses=answers(RegistryChange) | _PROBLEMS,
)
async def update_runbook(
    runbook_id: RunbookId, request: Request, svc: ServicesDep, who: Author
) -> dict[str, Any]:
    await require_runbook(svc, who, runbook_id)
    sub = await in_thread(parse_submission, await request.body(), request.headers.get("content-type"))
    require_team_member(who, sub.runbook.team)
    result = await in_thread(registry.update_definition, svc.engine, runbook_id, sub, who.actor)
    return await _announce(svc, result, "revised", who.actor)


@router.get("", summary="List runbooks", response_model=None, responses=answers(RunbookPage) | _PROBLEMS)
async def list_runbooks(
    svc: ServicesDep,
    who: Viewer,
    status: Annotated[Literal["DRAFT", "APPROVED", "DEPRECATED"] | None, Query()] = None,
    tag: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> dict[str, Any]:
    return await in_thread(
        registry.list_runbooks,
        svc.engine,
        status=status,
        tag=tag,
        limit=limit,
        offset=offset,
        visible=visible_clause(who),
    )


@router.get(
    "/{runbook_id}",
    summary="The current definition and metadata",
    response_model=None,
    responses=answers(RunbookDetail) | _PROBLEMS,
)
async def get_runbook(runbook_id: RunbookId, svc: ServicesDep, who: Viewer) -> dict[str, Any]:
    await require_runbook(svc, who, runbook_id)
    return await in_thread(registry.get, svc.engine, runbook_id)


@router.delete(
    "/{runbook_id}", status_code=204, summary="Delete a runbook and its revisions", responses=_PROBLEMS
)
async def delete_runbook(runbook_id: RunbookId, svc: ServicesDep, who: Author) -> Response:
    await require_runbook(svc, who, runbook_id)
    await in_thread(registry.remove, svc.engine, runbook_id)
    await announce(svc.bus, runbook_id, "deleted", actor=who.actor)
    return Response(status_code=204)


@router.get("/{runbook_id}/versions", summary="All revisions", responses=_PROBLEMS)
async def list_versions(runbook_id: RunbookId, svc: ServicesDep, who: Viewer) -> dict[str, Any]:
    await require_runbook(svc, who, runbook_id)
    return await in_thread(registry.versions, svc.engine, runbook_id)


@router.get("/{runbook_id}/versions/{revision}", summary="One revision", responses=_PROBLEMS)
async def get_version(
    runbook_id: RunbookId, revision: Revision, svc: ServicesDep, who: Viewer
) -> dict[str, Any]:
    await require_runbook(svc, who, runbook_id)
    return await in_thread(registry.version, svc.engine, runbook_id, revision)


@router.post(
    "/{runbook_id}/rollback",
    summary="Make a new revision equal to an old one (status DRAFT)",
    response_model=None,
    responses=answers(RegistryChange) | _PROBLEMS,
)
async def rollback(
    runbook_id: RunbookId, body: RollbackBody, svc: ServicesDep, who: Author
) -> dict[str, Any]:
    await require_runbook(svc, who, runbook_id)
    old = await in_thread(registry.version, svc.engine, runbook_id, body.revision)
    require_team_member(who, registry.team_of(old.get("definition")))
    result = await in_thread(registry.rollback, svc.engine, runbook_id, body.revision, who.actor)
    return await _announce(svc, result, "rolled_back", who.actor)


def _is_installer(who: Identity) -> bool:
    """rb up's `system` key: it approves the bundled runbooks it registered itself."""
    return who.kind == "key" and who.name == SYSTEM_KEY_NAME


@router.post(
    "/{runbook_id}/approve",
    summary="Status APPROVED; 403 when the approver authored the revision (four eyes)",
    response_model=None,
    responses=answers(RegistryChange) | _PROBLEMS,
)
async def approve(runbook_id: RunbookId, svc: ServicesDep, who: Admin) -> dict[str, Any]:
    result = await in_thread(
        registry.set_status,
        svc.engine,
        runbook_id,
        registry.APPROVED,
        who.actor,
        installer=_is_installer(who),
    )
    return await _announce(svc, result, "approved", who.actor)


@router.post(
    "/{runbook_id}/deprecate",
    summary="Status DEPRECATED (no more executions)",
    response_model=None,
    responses=answers(RegistryChange) | _PROBLEMS,
)
async def deprecate(runbook_id: RunbookId, svc: ServicesDep, who: Admin) -> dict[str, Any]:
    result = await in_thread(registry.set_status, svc.engine, runbook_id, registry.DEPRECATED, who.actor)
    return await _announce(svc, result, "deprecated", who.actor)


EXECUTE_ROUTE = "/api/v1/runbooks/{runbook_id}/execute"  # the route's template, as the metrics name it


@router.post(
    "/{runbook_id}/execute",
    status_code=202,
    summary="Trigger an execution of the current revision; 202 {execution_id, status: QUEUED}",
    responses=answers(Queued, 202, location=True) | _PROBLEMS | problem_responses(429, 503),
)
async def execute(
    runbook_id: RunbookId,
    request: Request,
    svc: ServicesDep,
    who: Operator,
    body: Annotated[triggering.ExecuteBody | None, Body()] = None,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            max_length=triggering.MAX_KEY_LENGTH,
            description="the same key gives the same execution",
        ),
    ] = None,
) -> JSONResponse:
    if not _RUNBOOK_ID.match(runbook_id):
        raise not_found(f"runbook {runbook_id!r}", "runbook-not-found")
    execution_id = await triggering.execute(
        svc,
        runbook_id,
        body or triggering.ExecuteBody(),
        who,
        idempotency_key,
        route=EXECUTE_ROUTE,
        caller=request.headers,  # a traceparent joins the execution to the caller's trace
    )
    return JSONResponse(
        {"execution_id": execution_id, "status": ExecutionStatus.QUEUED},
        status_code=202,
        headers={"Location": f"/api/v1/executions/{execution_id}"},
    )
