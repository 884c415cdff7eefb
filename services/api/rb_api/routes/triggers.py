"""/api/v1/triggers: alerts and webhook events in, AlertEvents on `rb.alert.<source>` out.

Each endpoint authenticates the sender first (rb_api.alerts.signatures: a timestamped HMAC
signature where the sender signs, a bearer token or basic auth where it cannot; 401 otherwise),
then parses, validates and normalises the request (rb_api.alerts.<source>), publishes one
AlertEvent per alert and answers 202 `{accepted, duplicates, trigger_ids, duplicate_ids}`.
Runbooks are matched asynchronously by the trigger router; nothing is published for a request
that is refused.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from rb_api.alerts import alertmanager, base, cloudevents, grafana, pagerduty, signatures, webhook
from rb_api.alerts.publish import publish_alerts
from rb_api.deps import ServicesDep
from rb_api.problems import problem_responses
from rb_common.messages import AlertEvent
from rb_common.model import ID_PATTERN
from rb_common.registry_events import last_seq

router = APIRouter(prefix="/api/v1/triggers", tags=["triggers"])

RunbookId = Annotated[str, Path(max_length=100, pattern=ID_PATTERN, description="the runbook to trigger")]


class Accepted(BaseModel):
    accepted: int
    duplicates: int
    trigger_ids: list[str]
    duplicate_ids: list[str]


def _responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    out: dict[int | str, dict[str, Any]] = {
        202: {"model": Accepted, "description": "published; duplicates were already on the stream"}
    }
    out.update(problem_responses(400, 413, 422, 503, *codes))
    return out


def _body(description: str, *media: str) -> dict[str, Any]:
    content = {m: {"schema": {"type": "array" if "batch" in m else "object"}} for m in media}
    return {"requestBody": {"required": True, "description": description, "content": content}}


async def _accept(svc: ServicesDep, events: list[AlertEvent]) -> JSONResponse:
    # The registry as of the alerts' arrival: every change acknowledged before now is at or
    # below this sequence, and the router applies them all before matching.
    seq = await last_seq(svc.bus)
    if seq is not None:
        events = [event.model_copy(update={"registry_seq": seq}) for event in events]
    outcome = await publish_alerts(svc.bus, events)
    return JSONResponse(outcome.body(), status_code=202)


@router.post(
    "/alertmanager",
    status_code=202,
    summary="Alertmanager webhook (version 4), bearer token or basic auth: one trigger per alert",
    openapi_extra=_body("An Alertmanager webhook notification, version 4", "application/json"),
    responses=_responses(401),
)
async def from_alertmanager(request: Request, svc: ServicesDep) -> JSONResponse:
    signatures.require_token(signatures.ALERTMANAGER, svc.settings, request.headers)
    payload = base.parse(alertmanager.Notification, await request.body(), what="Alertmanager notification")
    return await _accept(svc, alertmanager.normalise(payload, request.headers))


@router.post(
    "/grafana",
    status_code=202,
    summary="Grafana unified alerting webhook (version 1), bearer token or basic auth: one trigger per alert",
    openapi_extra=_body("A Grafana webhook contact point notification", "application/json"),
    responses=_responses(401),
)
async def from_grafana(request: Request, svc: ServicesDep) -> JSONResponse:
    signatures.require_token(signatures.GRAFANA, svc.settings, request.headers)
    payload = base.parse(grafana.GrafanaNotification, await request.body(), what="Grafana notification")
    return await _accept(svc, grafana.normalise(payload, request.headers))


@router.post(
    "/pagerduty",
    status_code=202,
    summary="PagerDuty V3 webhook, signed (X-PagerDuty-Signature)",
    openapi_extra=_body("A PagerDuty V3 webhook delivery: {event: {...}}", "application/json"),
    responses=_responses(401),
)
async def from_pagerduty(request: Request, svc: ServicesDep) -> JSONResponse:
    body = await request.body()
    signatures.require(signatures.PAGERDUTY, svc.settings, body, request.headers)
    payload = base.parse(pagerduty.Webhook, body, what="PagerDuty webhook")
    # PagerDuty signs no timestamp: the signed body's occurred_at must be recent, and an event
    # id is accepted once within the window.
    window = signatures.replay_window(svc.settings)
    signatures.check_occurred_at(signatures.PAGERDUTY, payload.event.occurred_at, window)
    guard = signatures.guard_of(svc)
    replay_key = f"pagerduty:{payload.event.id}"
    signatures.refuse_replay(signatures.PAGERDUTY, guard, replay_key, f"PagerDuty event {payload.event.id!r}")
    answer = await _accept(svc, pagerduty.normalise(payload, request.headers))
    guard.remember(replay_key, 2 * window)
    return answer


@router.post(
    "/cloudevents",
    status_code=202,
    summary="CloudEvents 1.0 (bearer token): structured, batch or binary (ce-* headers) mode",
    openapi_extra=_body(
        "A CloudEvent (structured), a JSON array of them (batch), or the event's data with ce-* "
        "headers (binary)",
        cloudevents.STRUCTURED,
        cloudevents.BATCH,
        "application/json",
    ),
    responses=_responses(401, 415),
)
async def from_cloudevents(request: Request, svc: ServicesDep) -> JSONResponse:
    signatures.require_token(signatures.CLOUDEVENTS, svc.settings, request.headers)
    events = cloudevents.parse(await request.body(), request.headers)
    return await _accept(svc, cloudevents.normalise(events, request.headers))


@router.post(
    "/webhook/{runbook_id}",
    status_code=202,
    summary='Generic webhook for one runbook, signed (X-RB-Signature: t=<unix>,v1=<hex HMAC of "<t>.<body>">)',
    openapi_extra=_body(
        "Any JSON object; its `event_id` (signed with it) names the event for deduplication",
        "application/json",
    ),
    responses=_responses(401),
)
async def from_webhook(runbook_id: RunbookId, request: Request, svc: ServicesDep) -> JSONResponse:
    body = await request.body()
    verified = signatures.require(signatures.WEBHOOK, svc.settings, body, request.headers)
    guard = signatures.guard_of(svc)
    signatures.refuse_replay(signatures.WEBHOOK, guard, verified.replay_key, "this signature")
    payload = base.parse(webhook.WebhookBody, body, what="webhook body")
    signed_id = signatures.digest("rb-webhook-event", signatures.signed_content(verified.t or 0, body))[:32]
    events = webhook.normalise(payload, request.headers, runbook_id=runbook_id, signed_id=signed_id)
    answer = await _accept(svc, events)
    guard.remember(verified.replay_key, 2 * signatures.replay_window(svc.settings))
    return answer
