"""/api/v1/slack/interactivity: Slack's Approve / Reject clicks, signed by Slack (no API key)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from rb_api import slack_actions
from rb_api.deps import ServicesDep
from rb_api.problems import problem_responses

router = APIRouter(prefix="/api/v1/slack", tags=["slack"])


@router.post(
    "/interactivity",
    summary="Slack interactivity: an Approve / Reject click (X-Slack-Signature checked)",
    responses=problem_responses(400, 401, 415, 503),
)
async def interactivity(request: Request, svc: ServicesDep) -> dict[str, Any]:
    headers = {k.lower(): v for k, v in request.headers.items()}
    return await slack_actions.handle(svc, headers, await request.body())
