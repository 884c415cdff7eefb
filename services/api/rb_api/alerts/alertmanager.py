"""Prometheus Alertmanager webhook notifications (payload version "4").

One AlertEvent per alert of the notification. The dedupe id is `fingerprint:startsAt`, so the
repeats Alertmanager sends for a still-firing alert (group_interval, repeat_interval) are
duplicates; a resolution is a distinct event `fingerprint:startsAt:resolved`. `group` lists the
dedupe ids of every alert of the notification (see AlertEvent).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from rb_api.alerts.base import MAX_EVENTS, Id, Timestamp, received_now
from rb_common.messages import AlertEvent

SOURCE = "alertmanager"

Status = Literal["firing", "resolved"]


class Alert(BaseModel):
    """One alert of a notification."""

    model_config = ConfigDict(extra="allow")

    status: Status
    labels: dict[str, str]
    annotations: dict[str, str] = {}
    startsAt: Timestamp
    endsAt: Timestamp | None = None
    generatorURL: str | None = None
    fingerprint: Id


class Group(BaseModel):
    """The group fields Alertmanager and Grafana share."""

    model_config = ConfigDict(extra="allow")

    groupKey: str | None = Field(default=None, max_length=8192)
    truncatedAlerts: int = Field(default=0, ge=0)
    status: Status | None = None
    receiver: str | None = None
    groupLabels: dict[str, str] = {}
    commonLabels: dict[str, str] = {}
    commonAnnotations: dict[str, str] = {}
    externalURL: str | None = None


class Notification(Group):
    """The body Alertmanager POSTs to a webhook receiver."""

    version: Literal["4"]
    alerts: list[Alert] = Field(min_length=1, max_length=MAX_EVENTS)


def dedupe_id(alert: Alert) -> str:
    base = f"{alert.fingerprint}:{alert.startsAt}"
    return f"{base}:resolved" if alert.status == "resolved" else base


def group_context(group: Group) -> dict[str, Any]:
    """What every alert's payload gets from its notification."""
    return {
        "groupLabels": dict(group.groupLabels),
        "commonLabels": dict(group.commonLabels),
        "commonAnnotations": dict(group.commonAnnotations),
        "externalURL": group.externalURL,
        "receiver": group.receiver,
    }


def alert_events(
    source: str,
    group: Group,
    alerts: Sequence[Alert],
    context: Mapping[str, Any],
    received_at: str | None,
) -> list[AlertEvent]:
    """One AlertEvent per alert; shared by the Alertmanager-shaped sources."""
    received = received_at or received_now()
    ids = [dedupe_id(alert) for alert in alerts]
    return [
        AlertEvent(
            source=source,
            dedupe_id=event_id,
            status=alert.status,
            name=alert.labels.get("alertname"),
            labels=dict(alert.labels),
            annotations=dict(alert.annotations),
            starts_at=alert.startsAt,
            group_key=group.groupKey,
            group=ids,
            payload={**alert.model_dump(mode="json", exclude_unset=True), **context},
            received_at=received,
        )
        for alert, event_id in zip(alerts, ids, strict=True)
    ]


def normalise(
    payload: Notification, headers: Mapping[str, str] | None = None, *, received_at: str | None = None
) -> list[AlertEvent]:
    """One AlertEvent per alert of an Alertmanager notification."""
    return alert_events(SOURCE, payload, payload.alerts, group_context(payload), received_at)
