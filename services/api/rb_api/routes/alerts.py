"""/api/v1/alerts: every alert the trigger router handled, with what it matched or why nothing."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from rb_api.alert_records import list_alerts
from rb_api.auth import Viewer
from rb_api.dbutil import in_thread
from rb_api.deps import ServicesDep
from rb_api.problems import problem_responses
from rb_api.response_models import AlertPage, answers
from rb_api.scope import hidden_runbooks

router = APIRouter(prefix="/api/v1/alerts", tags=["alerts"])

_PROBLEMS = problem_responses(400, 401, 403, 422, 503)


@router.get(
    "",
    summary="Alerts as the router handled them, newest first: matched runbooks and executions, "
    "or the reason nothing matched",
    response_model=None,
    responses=answers(AlertPage) | _PROBLEMS,
)
async def list_all(
    svc: ServicesDep,
    who: Viewer,
    source: Annotated[
        str | None, Query(max_length=64, description="alertmanager, grafana, pagerduty, cloudevents, webhook")
    ] = None,
    status: Annotated[Literal["firing", "resolved"] | None, Query()] = None,
    matched: Annotated[
        bool | None, Query(description="true: started runbooks; false: matched nothing")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> dict[str, Any]:
    hidden = await in_thread(hidden_runbooks, svc.engine, who)
    return await in_thread(
        list_alerts,
        svc.engine,
        source=source,
        status=status,
        matched=matched,
        limit=limit,
        offset=offset,
        hidden_runbooks=hidden,
    )
