"""POST /api/v1/events: an outside event for the `wait_for_event` steps waiting on its subject
and correlation. Published on `<ns>.events.<subject>`; the executor matches it to waiting steps
(rb_executor.service.outside). An event no step waits for is kept for RB_EVENT_BUFFER_SECONDS
and matched when a step starts waiting for it; after that it is dropped."""

from __future__ import annotations

import json
import uuid
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from rb_api.auth import Operator
from rb_api.deps import ServicesDep
from rb_api.problems import ProblemError, problem_responses
from rb_common.messages import OutsideEvent

router = APIRouter(prefix="/api/v1/events", tags=["events"])

SUBJECT_PATTERN = r"^[A-Za-z0-9_-]{1,64}(\.[A-Za-z0-9_-]{1,64}){0,7}$"


class EventBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    subject: str = Field(
        pattern=SUBJECT_PATTERN, max_length=200, description="what happened, dotted: deploy.finished"
    )
    correlation: str | int | None = Field(
        default=None, description="which waiting step it is for: what its `correlation` rendered to"
    )
    data: Any = Field(default=None, description="the event's data: the step's outputs.data")
    id: str | None = Field(
        default=None, max_length=200, description="the sender's event id: a repeated one is dropped"
    )


@router.post(
    "",
    status_code=202,
    summary="Send an outside event to the wait_for_event steps waiting for it",
    responses=problem_responses(400, 401, 403, 413, 415, 422, 503),
)
async def send_event(body: EventBody, svc: ServicesDep, who: Operator) -> JSONResponse:
    size = len(json.dumps(body.data, separators=(",", ":"), default=str).encode())
    if size > svc.settings.event_max_bytes:
        raise ProblemError(
            413,
            f"the event's data is {size} bytes, over RB_EVENT_MAX_BYTES ({svc.settings.event_max_bytes})",
            slug="event-too-large",
        )
    event_id = body.id or uuid.uuid4().hex
    message = OutsideEvent(subject=body.subject, correlation=body.correlation, data=body.data, id=event_id)
    bus = svc.bus
    try:
        await bus.js.publish(
            bus.names.outside_event_subject(body.subject),
            message.encode(),
            headers={"Nats-Msg-Id": f"event:{event_id}", "Rb-Actor": who.actor},
            stream=bus.names.outside_stream,
            timeout=5.0,
        )
    except Exception as exc:
        raise ProblemError(
            503,
            f"the event could not be published to NATS ({type(exc).__name__}); retry",
            slug="bus-unavailable",
            title="Message bus unavailable",
            headers={"Retry-After": "1"},
        ) from None
    return JSONResponse({"id": event_id, "subject": body.subject, "status": "ACCEPTED"}, status_code=202)
