"""Generic signed webhooks addressed to one runbook: `POST /api/v1/triggers/webhook/{runbook_id}`.

The body is any JSON object; it is signed with `X-RB-Signature: sha256=<hex>` (signatures.py).
`X-RB-Event-Id` names the event for deduplication; without it every request is a new event
(a uuid4). Labels are the string-valued top-level fields of the body.
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


class WebhookBody(RootModel[dict[str, Any]]):
    """Any JSON object."""


class _HeaderId(RootModel[Id]):
    pass


def event_id(headers: Mapping[str, str]) -> str | None:
    """The X-RB-Event-Id header; 400 when it is present but not a usable id."""
    raw = lower_keys(headers).get(EVENT_ID_HEADER.lower())
    if raw is None:
        return None
    try:
        return _HeaderId.model_validate(raw).root
    except ValidationError as exc:
        reason = exc.errors()[0].get("msg", "invalid")
        raise ProblemError(
            400,
            f"{EVENT_ID_HEADER} must be 1 to 256 printable characters ({reason})",
            slug="invalid-event-id",
            title="Invalid event id",
            errors=[{"field": f"header.{EVENT_ID_HEADER}", "message": reason, "type": "value_error"}],
        ) from None


def normalise(
    payload: WebhookBody,
    headers: Mapping[str, str] | None = None,
    *,
    runbook_id: str,
    received_at: str | None = None,
) -> list[AlertEvent]:
    """The AlertEvent of one webhook call for `runbook_id`."""
    body = payload.root
    dedupe_id = event_id(headers or {}) or uuid.uuid4().hex
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
