"""Hand-written payloads after the published formats of each alert source, and checks that they
parse as those formats (the other test_api_triggers_* modules import the builders from here).

- Alertmanager webhook, version 4 (prometheus.io/docs/alerting/latest/configuration/#webhook_config)
- Grafana unified alerting webhook contact point, version 1
- PagerDuty V3 webhooks (incident.triggered, incident.resolved), signed X-PagerDuty-Signature v1
- CloudEvents 1.0 HTTP binding: structured, binary, batch
- rb generic webhook, signed X-RB-Signature t=<unix>,v1=<hex>

Every builder takes a `token` that ends up in the fingerprints, ids and a label, so tests that
share the NATS server (and JetStream's 1 h duplicate window) never collide.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from rb_api.alerts import alertmanager, cloudevents, grafana, pagerduty, signatures, webhook

ALERTNAME = "RbTriggersTestHighErrorRate"  # matches no real runbook
TOKEN_SETTINGS = ("RB_ALERTMANAGER_TOKEN", "RB_GRAFANA_TOKEN", "RB_CLOUDEVENTS_TOKEN")


def just_now() -> str:
    """PagerDuty's occurred_at must be within the replay window of the API's clock."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


PD_SECRET = "pd-test-secret-5b1e"
RB_SECRET = "rb-test-secret-93c0"


def fingerprint(token: str, n: int) -> str:
    return hashlib.sha256(f"{token}:{n}".encode()).hexdigest()[:16]


def alertmanager_notification(token: str) -> dict[str, Any]:
    """A group of three alerts: two firing, one resolved, as Alertmanager 0.27 sends it."""
    group_labels = {"alertname": ALERTNAME}
    common = {"alertname": ALERTNAME, "job": "api", "severity": "critical", "rb_test": token}

    def alert(n: int, instance: str, status: str, starts: str, ends: str) -> dict[str, Any]:
        return {
            "status": status,
            "labels": {**common, "instance": instance},
            "annotations": {
                "summary": f"High error rate on {instance}",
                "runbook_url": "https://runbooks.example.com/high-error-rate",
            },
            "startsAt": starts,
            "endsAt": ends,
            "generatorURL": "http://prometheus:9090/graph?g0.expr=rate%28errors%5B5m%5D%29+%3E+0.05",
            "fingerprint": fingerprint(token, n),
        }

    return {
        "receiver": "rb",
        "status": "firing",
        "alerts": [
            alert(1, "api-1:8080", "firing", "2025-11-29T10:00:00.123456789Z", "0001-01-01T00:00:00Z"),
            alert(2, "api-2:8080", "firing", "2025-11-29T10:00:30.5Z", "0001-01-01T00:00:00Z"),
            alert(3, "api-3:8080", "resolved", "2025-11-29T09:30:00Z", "2025-11-29T10:01:00Z"),
        ],
        "groupLabels": group_labels,
        "commonLabels": {"alertname": ALERTNAME, "job": "api", "severity": "critical", "rb_test": token},
        "commonAnnotations": {"runbook_url": "https://runbooks.example.com/high-error-rate"},
        "externalURL": "http://alertmanager:9093",
        "version": "4",
        "groupKey": '{}/{severity="critical"}:{alertname="' + ALERTNAME + '"}',
        "truncatedAlerts": 0,
    }


def alertmanager_ids(notification: dict[str, Any]) -> list[str]:
    out = []
    for alert in notification["alerts"]:
        base = f"{alert['fingerprint']}:{alert['startsAt']}"
        out.append(f"{base}:resolved" if alert["status"] == "resolved" else base)
    return out


def grafana_notification(token: str) -> dict[str, Any]:
    """A Grafana 11 webhook contact point notification with one firing alert."""
    labels = {
        "alertname": "RbTriggersTestDiskFull",
        "grafana_folder": "Infra",
        "team": "ops",
        "rb_test": token,
    }
    return {
        "receiver": "rb-webhook",
        "status": "firing",
        "orgId": 1,
        "alerts": [
            {
                "status": "firing",
                "labels": labels,
                "annotations": {"summary": "Disk almost full", "description": "/var is 97% full"},
                "startsAt": "2025-11-29T10:05:00+01:00",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "https://grafana.example.com/alerting/grafana/cdq7x/view?orgId=1",
                "fingerprint": fingerprint(token, 7),
                "silenceURL": "https://grafana.example.com/alerting/silence/new?alertmanager=grafana",
                "dashboardURL": "https://grafana.example.com/d/disk?orgId=1",
                "panelURL": "https://grafana.example.com/d/disk?orgId=1&viewPanel=2",
                "values": {"A": 97.2, "C": 1},
                "valueString": "[ var='A' labels={instance=db-1} value=97.2 ], [ var='C' value=1 ]",
            }
        ],
        "groupLabels": {"alertname": "RbTriggersTestDiskFull", "grafana_folder": "Infra"},
        "commonLabels": labels,
        "commonAnnotations": {"summary": "Disk almost full"},
        "externalURL": "https://grafana.example.com/",
        "version": "1",
        "groupKey": '{}/{__grafana_autogenerated__="true"}:{alertname="RbTriggersTestDiskFull"}',
        "truncatedAlerts": 0,
        "title": "[FIRING:1] RbTriggersTestDiskFull Infra (ops)",
        "state": "alerting",
        "message": "**Firing**\n\nValue: A=97.2, C=1\nLabels:\n - alertname = RbTriggersTestDiskFull\n",
    }


def pagerduty_webhook(token: str, event_type: str = "incident.triggered") -> dict[str, Any]:
    """A PagerDuty V3 webhook delivery for an incident."""
    status = "resolved" if event_type == "incident.resolved" else "triggered"
    return {
        "event": {
            "id": f"01DEN{token.upper()}",
            "event_type": event_type,
            "resource_type": "incident",
            "occurred_at": just_now(),
            "agent": {
                "html_url": "https://acme.pagerduty.com/users/PLH1HKV",
                "id": "PLH1HKV",
                "self": "https://api.pagerduty.com/users/PLH1HKV",
                "summary": "Tenex Engineer",
                "type": "user_reference",
            },
            "client": {"name": "PagerDuty"},
            "data": {
                "id": f"Q{token[:12].upper()}",
                "type": "incident",
                "self": f"https://api.pagerduty.com/incidents/Q{token[:12].upper()}",
                "html_url": f"https://acme.pagerduty.com/incidents/Q{token[:12].upper()}",
                "number": 2411,
                "status": status,
                "incident_key": f"rb-test-{token}",
                "created_at": "2025-11-29T10:05:58Z",
                "title": "Checkout API error rate above 5%",
                "service": {
                    "html_url": "https://acme.pagerduty.com/services/PF9KMXH",
                    "id": "PF9KMXH",
                    "self": "https://api.pagerduty.com/services/PF9KMXH",
                    "summary": "Checkout API",
                    "type": "service_reference",
                },
                "assignees": [{"id": "PTUXL6G", "summary": "User 123", "type": "user_reference"}],
                "escalation_policy": {
                    "id": "PUS0KTE",
                    "summary": "Default",
                    "type": "escalation_policy_reference",
                },
                "teams": [{"id": "PFCVPS0", "summary": "Engineering", "type": "team_reference"}],
                "priority": {"id": "PSO75BM", "summary": "P1", "type": "priority_reference"},
                "urgency": "high",
                "conference_bridge": None,
                "resolve_reason": None,
            },
        }
    }


def pagerduty_ping(token: str) -> dict[str, Any]:
    """What PagerDuty sends when a subscription is tested."""
    return {
        "event": {
            "id": f"01PING{token.upper()}",
            "event_type": "pagey.ping",
            "resource_type": "pagey",
            "occurred_at": just_now(),
            "agent": None,
            "client": None,
            "data": {"message": "Hello from your friend Pagey!", "type": "ping"},
        }
    }


def structured_event(token: str, n: int = 1, **extra: Any) -> dict[str, Any]:
    """A CloudEvent in structured mode, with two extension attributes."""
    return {
        "specversion": "1.0",
        "id": f"evt-{token}-{n}",
        "source": "//rb-tests/deployments",
        "type": "com.example.deployment.failed",
        "subject": f"checkout-{n}",
        "time": "2025-11-29T10:07:00Z",
        "datacontenttype": "application/json",
        "rbtest": token,
        "priority": 2,
        "data": {"service": "checkout", "version": "1.4.2", "n": n},
        **extra,
    }


def binary_event(token: str) -> tuple[dict[str, str], bytes]:
    """Headers and body of a CloudEvent in binary mode (values percent-encoded as the spec says)."""
    headers = {
        "ce-specversion": "1.0",
        "ce-id": f"bin-{token}",
        "ce-source": "https://ci.example.com/pipelines/42",
        "ce-type": "com.example.pipeline.failed",
        "ce-subject": "build%20%2342",
        "ce-time": "2025-11-29T10:08:00Z",
        "ce-rbtest": token,
        "content-type": "application/json",
    }
    return headers, json.dumps({"pipeline": 42, "stage": "deploy"}).encode()


def webhook_body(token: str) -> dict[str, Any]:
    return {"event": "deploy.failed", "service": "checkout", "attempt": 3, "rb_test": token, "meta": {"a": 1}}


def signed(scheme: signatures.Scheme, secret: str, body: bytes, *, t: int | None = None) -> dict[str, str]:
    """Headers of a signed request; a timestamped scheme signs `t` (default: now)."""
    return {scheme.header: signatures.sign(scheme, secret, body, t=t), "content-type": "application/json"}


def encode(payload: Any) -> bytes:
    return json.dumps(payload).encode()


# -- the fixtures are what they claim to be -----------------------------------------------------


def test_alertmanager_fixture_is_a_version_4_notification() -> None:
    n = alertmanager.Notification.model_validate(alertmanager_notification("t1"))
    assert [a.status for a in n.alerts] == ["firing", "firing", "resolved"]
    assert n.model_extra == {}  # every top-level field of the format is modelled


def test_grafana_fixture_is_a_grafana_notification() -> None:
    n = grafana.GrafanaNotification.model_validate(grafana_notification("t1"))
    assert n.orgId == 1
    assert n.alerts[0].values == {"A": 97.2, "C": 1}


def test_pagerduty_fixtures_are_v3_deliveries() -> None:
    w = pagerduty.Webhook.model_validate(pagerduty_webhook("t1"))
    assert w.event.data.service is not None and w.event.data.service.summary == "Checkout API"
    ping = pagerduty.Webhook.model_validate(pagerduty_ping("t1"))
    assert ping.event.data.id is None


def test_cloudevents_fixtures_parse_in_their_modes() -> None:
    [one] = cloudevents.parse(encode(structured_event("t1")), {"content-type": cloudevents.STRUCTURED})
    assert one.extensions() == {"rbtest": "t1", "priority": 2}
    headers, body = binary_event("t1")
    [binary] = cloudevents.parse(body, headers)
    assert binary.subject == "build #42"


def test_webhook_fixture_is_an_object() -> None:
    assert webhook.WebhookBody.model_validate(webhook_body("t1")).root["attempt"] == 3
