"""Which runbooks an alert starts, with which parameters and which execution id. Pure."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from rb_common.errors import ExpressionError
from rb_common.expressions import render
from rb_common.messages import AlertEvent
from rb_common.model import Runbook, Trigger


@dataclass(frozen=True)
class Match:
    runbook: Runbook
    index: int
    trigger: Trigger
    execution_id: str
    params: dict[str, Any]
    context: dict[str, Any]


def deterministic_id(*parts: str) -> str:
    """An execution id derived from what started it: the same alert or fire time, the same id,
    so a repeated trigger finds the execution it already started."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


def label_matches(expected: str, actual: str | None) -> bool:
    """`value` is an exact match, `~regex` a full regular-expression match."""
    if actual is None:
        return False
    if expected.startswith("~"):
        try:
            return re.fullmatch(expected[1:], actual) is not None
        except re.error:
            return False
    return expected == actual


def alert_context(alert: AlertEvent) -> dict[str, Any]:
    """What `${trigger...}` sees for an alert."""
    return {
        "type": "alert",
        "source": alert.source,
        "name": alert.name,
        "status": alert.status,
        "labels": alert.labels,
        "annotations": alert.annotations,
        "starts_at": alert.starts_at,
        "group_key": alert.group_key,
        "dedupe_id": alert.dedupe_id,
        "payload": alert.payload,
    }


def matches(runbook: Runbook, alert: AlertEvent) -> list[tuple[int, Trigger]]:
    found = []
    for index, trigger in enumerate(runbook.triggers):
        spec = trigger.alert
        if spec is None or spec.source != alert.source:
            continue
        if alert.runbook_id is not None and alert.runbook_id != runbook.id:
            continue
        if alert.status != trigger.status:
            continue  # resolved alerts start nothing unless the trigger asks for them
        labels = {**alert.labels, "alertname": alert.labels.get("alertname", alert.name or "")}
        if all(label_matches(value, labels.get(key)) for key, value in spec.match.items()):
            found.append((index, trigger))
    return found


def route(runbooks: list[Runbook], alert: AlertEvent) -> tuple[list[Match], list[str]]:
    """(matches with rendered params, problems) for one alert across the registered runbooks."""
    context = alert_context(alert)
    out: list[Match] = []
    problems: list[str] = []
    for runbook in runbooks:
        for index, trigger in matches(runbook, alert):
            if trigger.per == "group" and alert.group_key:
                key = deterministic_id(
                    runbook.id, str(index), alert.source, "group", alert.group_key, *sorted(alert.group)
                )
            else:
                key = deterministic_id(runbook.id, str(index), alert.source, alert.dedupe_id)
            try:
                params = render(trigger.params, {"trigger": context, "params": {}, "env": {}})
            except ExpressionError as exc:
                problems.append(f"{runbook.id} trigger {index}: {exc}")
                continue
            out.append(Match(runbook, index, trigger, key, params, context))
    return out, problems
