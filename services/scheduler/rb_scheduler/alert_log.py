"""The record of every alert the router handled: what it matched, or why nothing.

One row per alert in the `alerts` table (a redelivered alert rewrites its row with the same
outcome: the execution ids are deterministic). The API lists them (`GET /api/v1/alerts`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine

from rb_common.messages import AlertEvent
from rb_common.model import Runbook
from rb_common.routing import deterministic_id, matches
from rb_store.recorder import upsert
from rb_store.tables import alerts

log = logging.getLogger(__name__)

SUMMARY_KEYS = ("summary", "description", "message", "title")


@dataclass(frozen=True)
class Started:
    """One match of an alert: the runbook, its trigger, the execution (started now, or already
    by an earlier delivery), or why it was not started."""

    runbook_id: str
    revision: int | None
    trigger_index: int
    execution_id: str
    started: bool
    refused: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "runbook_id": self.runbook_id,
            "revision": self.revision,
            "trigger_index": self.trigger_index,
            "execution_id": self.execution_id,
            "started": self.started,
        }
        if self.refused is not None:
            out["refused"] = self.refused
        return out


def alert_id(alert: AlertEvent) -> str:
    """The row's id: the same alert (source, addressed runbook, dedupe id) is the same row."""
    return deterministic_id("alert", alert.source, alert.runbook_id or "", alert.dedupe_id)


def summary_of(alert: AlertEvent) -> str | None:
    for key in SUMMARY_KEYS:
        if alert.annotations.get(key):
            return alert.annotations[key]
    return alert.name


def no_match_reason(alert: AlertEvent, registry: list[Runbook]) -> str:
    """Why an alert started nothing, in an operator's words."""
    if alert.runbook_id is not None and all(r.id != alert.runbook_id for r in registry):
        return f"runbook {alert.runbook_id!r} is not approved (or does not exist)"
    candidates = [
        r for r in registry if any(t.alert is not None and t.alert.source == alert.source for t in r.triggers)
    ]
    if alert.runbook_id is not None:
        candidates = [r for r in candidates if r.id == alert.runbook_id]
    if not candidates:
        return f"no approved runbook has an alert trigger for source {alert.source!r}"
    flipped = alert.model_copy(update={"status": "firing" if alert.status == "resolved" else "resolved"})
    if any(matches(r, flipped) for r in candidates):
        if alert.status == "resolved":
            return "resolved alert ignored: the matching triggers start on firing alerts only"
        return "firing alert ignored: the matching triggers start on resolved alerts only"
    return "no approved runbook matched its labels"


def _time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def record_row(
    alert: AlertEvent,
    started: list[Started],
    reason: str | None,
    routed_at: datetime | None = None,
) -> dict[str, Any]:
    routed_at = routed_at or datetime.now(UTC)
    matched = any(s.refused is None for s in started)
    return {
        "id": alert_id(alert),
        "source": alert.source,
        "dedupe_id": alert.dedupe_id,
        "runbook_id": alert.runbook_id,
        "name": alert.name,
        "status": alert.status,
        "labels": alert.labels,
        "summary": summary_of(alert),
        "received_at": _time(alert.received_at) or routed_at,
        "routed_at": routed_at,
        "registry_seq": alert.registry_seq,
        "matched": matched,
        "matches": [s.as_dict() for s in started],
        "reason": None if matched else reason,
    }


def record(engine: Engine, row: dict[str, Any]) -> None:
    with engine.begin() as connection:
        upsert(connection, alerts, [row], ["id"])
