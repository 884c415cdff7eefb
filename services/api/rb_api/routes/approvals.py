"""/api/v1/approvals: pending (and decided) approval steps; approve or reject one."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from rb_api import approvals
from rb_api.auth import Approver, Viewer
from rb_api.dbutil import in_thread
from rb_api.deps import ServicesDep
from rb_api.problems import ProblemError, problem_responses
from rb_api.scope import hidden_runbooks
from rb_store.approval_queries import list_approvals
from rb_store.approval_rows import STATUSES

router = APIRouter(prefix="/api/v1/approvals", tags=["approvals"])

ApprovalId = Annotated[
    str,
    Path(max_length=200, description="the approval's id: `<execution id>:<step id>`"),
]
_PROBLEMS = problem_responses(400, 401, 403, 404, 409, 415, 422, 503)


class DecisionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    comment: str | None = Field(default=None, max_length=2000, description="why; required by some steps")


@router.get("", summary="List approvals, newest request first", responses=_PROBLEMS)
async def list_all(
    svc: ServicesDep,
    who: Viewer,
    status: Annotated[str | None, Query(max_length=16, description=", ".join(STATUSES))] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> dict[str, Any]:
    wanted = status.strip().lower() if status else None
    if wanted is not None and wanted not in STATUSES:
        raise ProblemError(
            422,
            f"unknown status {status!r} (one of {', '.join(STATUSES)})",
            slug="invalid-request",
            title="Invalid request",
            errors=[{"field": "query.status", "message": "unknown status"}],
        )
    hidden = await in_thread(hidden_runbooks, svc.engine, who)
    items = await in_thread(
        list_approvals, svc.engine, status=wanted, limit=limit, offset=offset, exclude_runbooks=hidden
    )
    return {"items": items, "limit": limit, "offset": offset}


@router.get("/{approval_id}", summary="One approval, with its decisions", responses=_PROBLEMS)
async def get_one(approval_id: ApprovalId, svc: ServicesDep, who: Viewer) -> dict[str, Any]:
    return await approvals.lookup(svc, who, approval_id)


_Body = Annotated[DecisionBody | None, Body()]


async def _decide(
    svc: ServicesDep, who: Approver, approval_id: str, decision: str, body: DecisionBody | None
) -> JSONResponse:
    result = await approvals.decide(
        svc, who, approval_id, decision, body.comment if body else None, via="api"
    )
    return JSONResponse(result, status_code=202, headers={"Location": f"/api/v1/approvals/{approval_id}"})


@router.post(
    "/{approval_id}/approve",
    status_code=202,
    summary="Approve (not by the execution's requester or the revision's author)",
    responses=_PROBLEMS,
)
async def approve(
    approval_id: ApprovalId, svc: ServicesDep, who: Approver, body: _Body = None
) -> JSONResponse:
    return await _decide(svc, who, approval_id, "approve", body)


@router.post("/{approval_id}/reject", status_code=202, summary="Reject: the step fails", responses=_PROBLEMS)
async def reject(
    approval_id: ApprovalId, svc: ServicesDep, who: Approver, body: _Body = None
) -> JSONResponse:
    return await _decide(svc, who, approval_id, "reject", body)
