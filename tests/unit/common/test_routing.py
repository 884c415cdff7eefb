"""Alert routing: matching by source, labels (exact and ~regex) and status; params; ids."""

from __future__ import annotations

from rb_common.messages import AlertEvent
from rb_common.model import Runbook
from rb_common.routing import route


def runbook(**trigger: object) -> Runbook:
    return Runbook.model_validate(
        {
            "id": "rb-restart",
            "name": "Restart",
            "parameters": {"type": "object", "properties": {"instance": {"type": "string"}}},
            "triggers": [trigger],
            "steps": [{"id": "a", "type": "transform"}],
        }
    )


def alert(**fields: object) -> AlertEvent:
    base: dict[str, object] = {
        "source": "alertmanager",
        "dedupe_id": "fp1:2025-01-01T00:00:00Z",
        "name": "HighErrorRate",
        "labels": {"alertname": "HighErrorRate", "severity": "critical", "instance": "web-1:9100"},
        "annotations": {"summary": "errors up"},
        "group_key": "g1",
        "group": ["fp1:2025-01-01T00:00:00Z", "fp2:2025-01-01T00:00:00Z"],
    }
    base.update(fields)
    return AlertEvent.model_validate(base)


RULE = {
    "alert": {"source": "alertmanager", "match": {"alertname": "HighErrorRate", "severity": "~crit.*"}},
    "params": {"instance": "${trigger.labels.instance}"},
}


def test_matching_alert_starts_the_runbook_with_mapped_params() -> None:
    matched, problems = route([runbook(**RULE)], alert())
    assert problems == []
    assert [m.params for m in matched] == [{"instance": "web-1:9100"}]


def test_label_mismatch_source_mismatch_and_resolved_start_nothing() -> None:
    assert (
        route([runbook(**RULE)], alert(labels={"alertname": "HighErrorRate", "severity": "warning"}))[0] == []
    )
    assert route([runbook(**RULE)], alert(source="grafana"))[0] == []
    assert route([runbook(**RULE)], alert(status="resolved"))[0] == []
    resolved_rule = {**RULE, "status": "resolved"}
    assert len(route([runbook(**resolved_rule)], alert(status="resolved"))[0]) == 1


def test_execution_ids_are_per_alert_or_per_group() -> None:
    per_alert = [
        route([runbook(**RULE)], alert(dedupe_id=d))[0][0].execution_id
        for d in ("fp1:2025-01-01T00:00:00Z", "fp2:2025-01-01T00:00:00Z")
    ]
    assert len(set(per_alert)) == 2
    assert per_alert[0] == route([runbook(**RULE)], alert())[0][0].execution_id  # stable on redelivery
    group_rule = {**RULE, "per": "group"}
    per_group = {
        route([runbook(**group_rule)], alert(dedupe_id=d))[0][0].execution_id
        for d in ("fp1:2025-01-01T00:00:00Z", "fp2:2025-01-01T00:00:00Z")
    }
    assert len(per_group) == 1


def test_webhooks_address_one_runbook() -> None:
    rule = {"alert": {"source": "webhook"}}
    hook = alert(source="webhook", runbook_id="someone-else")
    assert route([runbook(**rule)], hook)[0] == []
    assert len(route([runbook(**rule)], alert(source="webhook", runbook_id="rb-restart"))[0]) == 1


def test_a_bad_params_expression_is_a_problem_not_a_crash() -> None:
    rule = {**RULE, "params": {"instance": "${trigger.labels.missing}"}}
    matched, problems = route([runbook(**rule)], alert())
    assert matched == [] and "missing" in problems[0]
