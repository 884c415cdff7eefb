"""The alert record: why an alert started nothing, and the row the router writes."""

from __future__ import annotations

from datetime import UTC, datetime

from rb_common.loader import load_runbook_text
from rb_common.messages import AlertEvent
from rb_common.model import Runbook
from rb_scheduler.alert_log import Started, alert_id, no_match_reason, record_row


def runbook(runbook_id: str, source: str = "alertmanager", status: str = "firing") -> Runbook:
    text = f"""
id: {runbook_id}
name: x
triggers:
  - alert: {{source: {source}, match: {{alertname: HighErrorRate}}}}
    status: {status}
steps:
  - {{id: a, type: transform, inputs: {{}}}}
"""
    return load_runbook_text(text)[0]


def alert(**kw: object) -> AlertEvent:
    base: dict[str, object] = {
        "source": "alertmanager",
        "dedupe_id": "fp@t",
        "name": "HighErrorRate",
        "labels": {"alertname": "HighErrorRate"},
    }
    return AlertEvent.model_validate({**base, **kw})


def test_reasons_name_what_was_missing() -> None:
    assert (
        no_match_reason(alert(), []) == "no approved runbook has an alert trigger for source 'alertmanager'"
    )
    assert no_match_reason(alert(labels={"alertname": "Other"}), [runbook("a")]) == (
        "no approved runbook matched its labels"
    )
    assert no_match_reason(alert(status="resolved"), [runbook("a")]).startswith("resolved alert ignored")
    assert no_match_reason(alert(), [runbook("a", status="resolved")]).startswith("firing alert ignored")
    webhook = alert(source="webhook", runbook_id="b")
    assert no_match_reason(webhook, [runbook("a", "webhook")]) == (
        "runbook 'b' is not approved (or does not exist)"
    )


def test_the_row_has_the_matches_or_the_reason() -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    event = alert(received_at="2026-01-02T03:04:00+00:00", annotations={"summary": "5xx"}, registry_seq=7)
    row = record_row(event, [Started("a", 3, 0, "e1", True)], None, now)
    assert row["id"] == alert_id(event) and row["matched"] is True and row["reason"] is None
    assert row["matches"] == [
        {"runbook_id": "a", "revision": 3, "trigger_index": 0, "execution_id": "e1", "started": True}
    ]
    assert row["summary"] == "5xx" and row["registry_seq"] == 7
    assert row["received_at"] == datetime(2026, 1, 2, 3, 4, tzinfo=UTC) and row["routed_at"] == now
    refused = record_row(event, [Started("a", 3, 0, "e1", False, "bad params")], "a: bad params", now)
    assert refused["matched"] is False and refused["reason"] == "a: bad params"
    nothing = record_row(alert(), [], "no approved runbook matched its labels", now)
    assert (
        nothing["matched"] is False
        and nothing["received_at"] == now
        and nothing["summary"] == "HighErrorRate"
    )
