"""Grafana unified alerting webhook notifications (payload version "1").

The same family as Alertmanager's (Grafana's notifier is Alertmanager's): one AlertEvent per
alert, dedupe id `fingerprint:startsAt` (`:resolved` appended for resolutions).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field

from rb_api.alerts.alertmanager import Alert, Group, alert_events, group_context
from rb_api.alerts.base import MAX_EVENTS
from rb_common.messages import AlertEvent

SOURCE = "grafana"


class GrafanaAlert(Alert):
    silenceURL: str | None = None
    dashboardURL: str | None = None
    panelURL: str | None = None
    imageURL: str | None = None
    values: dict[str, Any] | None = None
    valueString: str | None = None


class GrafanaNotification(Group):
    """The body a Grafana webhook contact point POSTs."""

    version: Literal["1"]
    orgId: int | None = None
    title: str | None = None
    state: str | None = None
    message: str | None = None
    alerts: list[GrafanaAlert] = Field(min_length=1, max_length=MAX_EVENTS)


def normalise(
    payload: GrafanaNotification,
    headers: Mapping[str, str] | None = None,
    *,
    received_at: str | None = None,
) -> list[AlertEvent]:
    """One AlertEvent per alert of a Grafana notification."""
    context = {
        **group_context(payload),
        "orgId": payload.orgId,
        "title": payload.title,
        "state": payload.state,
    }
    return alert_events(SOURCE, payload, payload.alerts, context, received_at)
