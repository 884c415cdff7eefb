"""Generic signed webhooks addressed to one runbook: `POST /api/v1/triggers/webhook/{runbook_id}`.

The body is any JSON object; it is signed with `X-RB-Signature: t=<unix>,v1=<hex>`
(signatures.py). Its `event_id` field names the event for deduplication: it is signed with the
body. `X-RB-Event-Id` is not covered by the signature: it is accepted only when it repeats the
body's `event_id` (400 otherwise). Without an event id, the id derives from the signed content
(timestamp and body), so a request is one event. Labels are the string-valued top-level fields
of the body.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from pydantic import RootModel, ValidationError

from rb_api.alerts.base import Id, lower_keys, received_now, string_fields
from rb_api.problems import ProblemError
from rb_common.messages import AlertEvent

SOURCE = "webhook"
EVENT_ID_HEADER = "X-RB-Event-Id"
EVENT_ID_FIELD = "event_id"


class WebhookBody(RootModel[dict[str, Any]]):
    """Any JSON object."""


class _HeaderId(RootModel[Id]):
    pass


def _valid_id(raw: Any, where: str, name: str, status: int, slug: str, title: str) -> str:
    try:
        return _HeaderId.model_validate(raw).root
    except ValidationError as exc:
        reason = exc.errors()[0].get("msg", "invalid")
        raise ProblemError(
            status,
            f"{name} must be 1 to 256 printable characters ({reason})",
            slug=slug,
            title=title,
            errors=[{"field": f"{where}.{name}", "message": reason, "type": "value_error"}],
        ) from None


def event_id(headers: Mapping[str, str]) -> str | None:
    """The X-RB-Event-Id header; 400 when it is present but not a usable id."""
    raw = lower_keys(headers).get(EVENT_ID_HEADER.lower())
    if raw is None:
        return None
    return _valid_id(raw, "header", EVENT_ID_HEADER, 400, "invalid-event-id", "Invalid event id")


def body_event_id(body: dict[str, Any]) -> str | None:
    """The body's `event_id`; 422 when it is present but not a usable id."""
    raw = body.get(EVENT_ID_FIELD)
    if raw is None:
        return None
    return _valid_id(raw, "body", EVENT_ID_FIELD, 422, "invalid-request", "Invalid request")


def normalise(
    payload: WebhookBody,
    headers: Mapping[str, str] | None = None,
    *,
    runbook_id: str,
    received_at: str | None = None,
    signed_id: str | None = None,
) -> list[AlertEvent]:
    """The AlertEvent of one webhook call for `runbook_id`; `signed_id`: the id when the body
    names none (derived from the signed content)."""
    body = payload.root
    from_body = body_event_id(body)
    from_header = event_id(headers or {})
    if from_header is not None and from_header != from_body:
        raise ProblemError(
            400,
            f"{EVENT_ID_HEADER} is not covered by the signature: put the event id in the signed body "
            f"as {EVENT_ID_FIELD!r} (the header may only repeat it)",
            slug="invalid-event-id",
            title="Invalid event id",
            errors=[{"field": f"header.{EVENT_ID_HEADER}", "message": "not signed", "type": "value_error"}],
        )
    dedupe_id = from_body or signed_id or uuid.uuid4().hex
    return [
        AlertEvent(
            source=SOURCE,
            dedupe_id=dedupe_id,
            labels=string_fields(body),
            group=[dedupe_id],
            runbook_id=runbook_id,
            payload=body,
            received_at=received_at or received_now(),
        )
    ]
