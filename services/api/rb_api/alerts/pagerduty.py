"""PagerDuty V3 webhooks: `{"event": {id, event_type, resource_type, occurred_at, agent, client, data}}`.

One AlertEvent per delivery. The dedupe id is the `X-Webhook-Id` header when present, else the
event's id; `incident.resolved` is a resolution, every other event type is firing (a trigger asks
for the event types it wants through the `event_type` label). Signatures: see signatures.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from rb_api.alerts.base import Id, Timestamp, lower_keys, received_now
from rb_common.messages import AlertEvent

SOURCE = "pagerduty"
WEBHOOK_ID_HEADER = "X-Webhook-Id"
RESOLVED_TYPES = frozenset({"incident.resolved"})


class Reference(BaseModel):
    """A PagerDuty reference object (service, priority, escalation policy, agent...)."""

    model_config = ConfigDict(extra="allow")

    id: str | None = None
    type: str | None = None
    summary: str | None = None
    name: str | None = None

    def label(self) -> str | None:
        return self.summary or self.name or self.id


class EventData(BaseModel):
    """The resource the event is about; an incident for incident.* events."""

    model_config = ConfigDict(extra="allow")

    id: str | None = None
    type: str | None = None
    title: str | None = None
    status: str | None = None
    urgency: str | None = None
    number: int | None = None
    incident_key: str | None = None
    html_url: str | None = None
    created_at: str | None = None
    service: Reference | None = None
    priority: Reference | None = None
    escalation_policy: Reference | None = None


class Event(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: Id
    event_type: Id
    resource_type: str | None = None
    occurred_at: Timestamp | None = None
    agent: Reference | None = None
    client: dict[str, Any] | None = None
    data: EventData


class Webhook(BaseModel):
    """The body PagerDuty POSTs to a V3 webhook subscription."""

    model_config = ConfigDict(extra="allow")

    event: Event


class _HeaderId(BaseModel):
    value: Id


def delivery_id(headers: Mapping[str, str]) -> str | None:
    """The X-Webhook-Id header, when it is a usable id."""
    raw = lower_keys(headers).get(WEBHOOK_ID_HEADER.lower())
    if raw is None:
        return None
    try:
        return _HeaderId(value=raw).value
    except ValidationError:
        return None


def labels_of(event: Event) -> dict[str, str]:
    data = event.data
    candidates: dict[str, Any] = {
        "event_type": event.event_type,
        "resource_type": event.resource_type,
        "incident_id": data.id if (event.resource_type or data.type or "").startswith("incident") else None,
        "status": data.status,
        "urgency": data.urgency,
        "service": data.service.label() if data.service else None,
        "service_id": data.service.id if data.service else None,
        "priority": data.priority.label() if data.priority else None,
        "escalation_policy": data.escalation_policy.label() if data.escalation_policy else None,
        "incident_number": data.number,
        "incident_key": data.incident_key,
    }
    return {key: str(value) for key, value in candidates.items() if value is not None and value != ""}


def normalise(
    payload: Webhook, headers: Mapping[str, str] | None = None, *, received_at: str | None = None
) -> list[AlertEvent]:
    """The AlertEvent of one PagerDuty webhook delivery."""
    event = payload.event
    data = event.data
    annotations = {
        key: value
        for key, value in {"title": data.title, "html_url": data.html_url}.items()
        if isinstance(value, str) and value
    }
    dedupe_id = delivery_id(headers or {}) or event.id
    return [
        AlertEvent(
            source=SOURCE,
            dedupe_id=dedupe_id,
            status="resolved" if event.event_type in RESOLVED_TYPES else "firing",
            name=data.title or event.event_type,
            labels=labels_of(event),
            annotations=annotations,
            starts_at=data.created_at or event.occurred_at,
            group=[dedupe_id],
            payload=payload.model_dump(mode="json", exclude_unset=True),
            received_at=received_at or received_now(),
        )
    ]
