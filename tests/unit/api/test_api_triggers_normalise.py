"""Pure normalisation of alert payloads into AlertEvents, body parsing and HMAC signatures."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import SecretStr
from test_api_triggers_payloads import (
    ALERTNAME,
    PD_SECRET,
    alertmanager_ids,
    alertmanager_notification,
    binary_event,
    encode,
    grafana_notification,
    pagerduty_ping,
    pagerduty_webhook,
    structured_event,
    webhook_body,
)

from rb_api.alerts import alertmanager, base, cloudevents, grafana, pagerduty, signatures, webhook
from rb_api.alerts.publish import msg_id
from rb_api.problems import ProblemError
from rb_common.messages import AlertEvent

NOW = "2025-11-29T10:10:00+00:00"


def problem(exc: pytest.ExceptionInfo[ProblemError]) -> tuple[int, list[str]]:
    return exc.value.status, [e["field"] for e in exc.value.errors or []]


# -- Alertmanager -------------------------------------------------------------------------------


def test_alertmanager_one_event_per_alert_with_group_and_payload() -> None:
    raw = alertmanager_notification("am1")
    events = alertmanager.normalise(alertmanager.Notification.model_validate(raw), {}, received_at=NOW)
    ids = alertmanager_ids(raw)
    assert [e.dedupe_id for e in events] == ids
    assert ids[0] == f"{raw['alerts'][0]['fingerprint']}:2025-11-29T10:00:00.123456789Z"
    assert ids[2].endswith(":2025-11-29T09:30:00Z:resolved")
    assert [e.status for e in events] == ["firing", "firing", "resolved"]
    first = events[0]
    assert first.source == "alertmanager"
    assert first.name == ALERTNAME
    assert first.labels == raw["alerts"][0]["labels"]
    assert first.annotations == raw["alerts"][0]["annotations"]
    assert first.starts_at == "2025-11-29T10:00:00.123456789Z"  # exactly as sent
    assert first.group_key == raw["groupKey"]
    assert all(e.group == ids for e in events)
    assert first.received_at == NOW
    assert first.runbook_id is None
    # payload: the alert as received plus the notification's context
    assert {k: first.payload[k] for k in raw["alerts"][0]} == raw["alerts"][0]
    assert first.payload["groupLabels"] == raw["groupLabels"]
    assert first.payload["commonLabels"] == raw["commonLabels"]
    assert first.payload["externalURL"] == "http://alertmanager:9093"
    # the event is a valid message and round-trips
    assert AlertEvent.model_validate_json(first.encode()) == first


def test_alertmanager_keeps_unknown_fields_of_real_payloads() -> None:
    raw = alertmanager_notification("am2")
    raw["alerts"][0]["somethingNew"] = {"x": 1}
    raw["newTopLevel"] = True
    [first, *_] = alertmanager.normalise(alertmanager.Notification.model_validate(raw))
    assert first.payload["somethingNew"] == {"x": 1}
    assert first.received_at  # defaults to now


def test_alertmanager_received_at_defaults_to_utc_now() -> None:
    [event, *_] = alertmanager.normalise(
        alertmanager.Notification.model_validate(alertmanager_notification("am3"))
    )
    assert event.received_at is not None and event.received_at.endswith("+00:00")


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda n: n.update(version="3"), "body.version"),
        (lambda n: n.pop("version"), "body.version"),
        (lambda n: n.update(alerts=[]), "body.alerts"),
        (lambda n: n["alerts"][1].pop("fingerprint"), "body.alerts.1.fingerprint"),
        (lambda n: n["alerts"][0].update(status="pending"), "body.alerts.0.status"),
        (lambda n: n["alerts"][0].update(startsAt="yesterday"), "body.alerts.0.startsAt"),
        (lambda n: n["alerts"][2]["labels"].update(severity=5), "body.alerts.2.labels.severity"),
        (lambda n: n["alerts"][0].update(fingerprint="a\nb"), "body.alerts.0.fingerprint"),
    ],
)
def test_alertmanager_schema_violations_name_the_field(mutate: Any, field: str) -> None:
    raw = alertmanager_notification("am4")
    mutate(raw)
    with pytest.raises(ProblemError) as exc:
        base.parse(alertmanager.Notification, encode(raw))
    status, fields = problem(exc)
    assert status == 422
    assert field in fields
    assert exc.value.slug == "invalid-request"
    assert field in exc.value.detail


# -- Grafana ------------------------------------------------------------------------------------


def test_grafana_normalises_like_alertmanager() -> None:
    raw = grafana_notification("gf1")
    [event] = grafana.normalise(grafana.GrafanaNotification.model_validate(raw), {}, received_at=NOW)
    alert = raw["alerts"][0]
    assert event.source == "grafana"
    assert event.dedupe_id == f"{alert['fingerprint']}:2025-11-29T10:05:00+01:00"
    assert event.name == "RbTriggersTestDiskFull"
    assert event.status == "firing"
    assert event.group == [event.dedupe_id]
    assert event.group_key == raw["groupKey"]
    assert event.payload["values"] == {"A": 97.2, "C": 1}
    assert event.payload["dashboardURL"] == alert["dashboardURL"]
    assert event.payload["orgId"] == 1
    assert event.payload["externalURL"] == raw["externalURL"]


def test_grafana_resolved_alert_is_a_distinct_event() -> None:
    raw = grafana_notification("gf2")
    raw["status"] = raw["alerts"][0]["status"] = "resolved"
    [event] = grafana.normalise(grafana.GrafanaNotification.model_validate(raw))
    assert event.status == "resolved"
    assert event.dedupe_id.endswith(":resolved")


def test_grafana_rejects_another_version() -> None:
    raw = grafana_notification("gf3")
    raw["version"] = "4"
    with pytest.raises(ProblemError) as exc:
        base.parse(grafana.GrafanaNotification, encode(raw))
    assert problem(exc) == (422, ["body.version"])


# -- PagerDuty ----------------------------------------------------------------------------------


def test_pagerduty_incident_triggered() -> None:
    raw = pagerduty_webhook("pd1")
    [event] = pagerduty.normalise(pagerduty.Webhook.model_validate(raw), {}, received_at=NOW)
    assert event.source == "pagerduty"
    assert event.dedupe_id == raw["event"]["id"]
    assert event.status == "firing"
    assert event.name == "Checkout API error rate above 5%"
    assert event.labels == {
        "event_type": "incident.triggered",
        "resource_type": "incident",
        "incident_id": raw["event"]["data"]["id"],
        "status": "triggered",
        "urgency": "high",
        "service": "Checkout API",
        "service_id": "PF9KMXH",
        "priority": "P1",
        "escalation_policy": "Default",
        "incident_number": "2411",
        "incident_key": "rb-test-pd1",
    }
    assert event.annotations["html_url"].startswith("https://acme.pagerduty.com/incidents/")
    assert event.starts_at == "2025-11-29T10:05:58Z"
    assert event.payload == raw
    assert event.group == [event.dedupe_id]


def test_pagerduty_resolved_and_webhook_id_header() -> None:
    raw = pagerduty_webhook("pd2", "incident.resolved")
    model = pagerduty.Webhook.model_validate(raw)
    [event] = pagerduty.normalise(model, {"X-Webhook-Id": "whk-123"})
    assert event.status == "resolved"
    assert event.dedupe_id == "whk-123"
    [event] = pagerduty.normalise(model, {"x-webhook-id": "  "})  # unusable: the event id
    assert event.dedupe_id == raw["event"]["id"]


def test_pagerduty_ping_has_no_incident() -> None:
    [event] = pagerduty.normalise(pagerduty.Webhook.model_validate(pagerduty_ping("pd3")))
    assert event.name == "pagey.ping"
    assert event.labels == {"event_type": "pagey.ping", "resource_type": "pagey"}


def test_pagerduty_schema_violations() -> None:
    raw = pagerduty_webhook("pd4")
    del raw["event"]["id"]
    raw["event"]["data"] = "nope"
    with pytest.raises(ProblemError) as exc:
        base.parse(pagerduty.Webhook, encode(raw))
    assert problem(exc) == (422, ["body.event.id", "body.event.data"])


# -- CloudEvents --------------------------------------------------------------------------------

STRUCTURED = {"content-type": "application/cloudevents+json; charset=utf-8"}
BATCH = {"content-type": "application/cloudevents-batch+json"}


def test_cloudevents_structured() -> None:
    raw = structured_event("ce1")
    [event] = cloudevents.normalise(cloudevents.parse(encode(raw), STRUCTURED), {}, received_at=NOW)
    assert event.source == "cloudevents"
    assert event.dedupe_id == "//rb-tests/deployments:evt-ce1-1"
    assert event.name == "com.example.deployment.failed"
    assert event.status == "firing"
    assert event.labels == {
        "type": "com.example.deployment.failed",
        "source": "//rb-tests/deployments",
        "subject": "checkout-1",
        "rbtest": "ce1",  # string extension; the integer one is not a label
    }
    assert event.starts_at == "2025-11-29T10:07:00Z"
    assert event.payload == raw  # {"data": ..., every attribute}


def test_cloudevents_binary_mode() -> None:
    headers, body = binary_event("ce2")
    [event] = cloudevents.normalise(cloudevents.parse(body, headers))
    assert event.dedupe_id == "https://ci.example.com/pipelines/42:bin-ce2"
    assert event.labels["subject"] == "build #42"
    assert event.labels["rbtest"] == "ce2"
    assert event.payload["data"] == {"pipeline": 42, "stage": "deploy"}
    assert event.payload["datacontenttype"] == "application/json"
    assert event.payload["specversion"] == "1.0"


def test_cloudevents_binary_text_and_bytes_data() -> None:
    headers, _ = binary_event("ce3")
    [text] = cloudevents.parse(b"plain words", {**headers, "content-type": "text/plain"})
    assert text.data == "plain words"
    [raw] = cloudevents.parse(b"\xff\x00\x01", {**headers, "content-type": "application/octet-stream"})
    assert raw.data is None and raw.data_base64 == "/wAB"
    [empty] = cloudevents.parse(b"", {k: v for k, v in headers.items() if k != "content-type"})
    assert empty.data is None


def test_cloudevents_batch() -> None:
    batch = [structured_event("ce4", 1), structured_event("ce4", 2)]
    events = cloudevents.normalise(cloudevents.parse(encode(batch), BATCH))
    assert [e.dedupe_id for e in events] == [
        "//rb-tests/deployments:evt-ce4-1",
        "//rb-tests/deployments:evt-ce4-2",
    ]
    assert cloudevents.parse(b"[]", BATCH) == []


def test_cloudevents_plain_json_with_specversion_is_structured() -> None:
    [event] = cloudevents.parse(encode(structured_event("ce5")), {"content-type": "application/json"})
    assert event.id == "evt-ce5-1"


@pytest.mark.parametrize(
    ("body", "headers", "fields"),
    [
        ({**structured_event("x"), "specversion": "0.3"}, STRUCTURED, ["body.specversion"]),
        ({k: v for k, v in structured_event("x").items() if k != "id"}, STRUCTURED, ["body.id"]),
        ({**structured_event("x"), "source": "", "type": " "}, STRUCTURED, ["body.source", "body.type"]),
        ({**structured_event("x"), "time": "soon"}, STRUCTURED, ["body.time"]),
        ({**structured_event("x"), "data_base64": "AAAA"}, STRUCTURED, ["body"]),
        ([structured_event("x"), {"specversion": "1.0", "id": "2", "source": "s"}], BATCH, ["body.1.type"]),
        ([structured_event("x"), "nope"], BATCH, ["body.1"]),
        (structured_event("x"), BATCH, ["body"]),
        ([structured_event("x")], STRUCTURED, ["body"]),
        (
            {"just": "json"},
            {"content-type": "application/json"},
            ["header.ce-specversion", "header.ce-id", "header.ce-source", "header.ce-type"],
        ),
    ],
)
def test_cloudevents_invalid_events_name_the_attribute(
    body: Any, headers: dict[str, str], fields: list[str]
) -> None:
    with pytest.raises(ProblemError) as exc:
        cloudevents.parse(encode(body), headers)
    assert problem(exc) == (422, fields)


def test_cloudevents_binary_missing_header_names_it() -> None:
    headers, body = binary_event("ce6")
    del headers["ce-source"]
    with pytest.raises(ProblemError) as exc:
        cloudevents.parse(body, headers)
    assert problem(exc) == (422, ["header.ce-source"])


def test_cloudevents_malformed_json_is_400_and_other_formats_415() -> None:
    with pytest.raises(ProblemError) as exc:
        cloudevents.parse(b'{"specversion": "1.0",', STRUCTURED)
    assert exc.value.status == 400
    headers, _ = binary_event("ce7")
    with pytest.raises(ProblemError) as exc:
        cloudevents.parse(b"{oops", headers)
    assert exc.value.status == 400
    with pytest.raises(ProblemError) as exc:
        cloudevents.parse(b"<xml/>", {"content-type": "application/cloudevents+xml"})
    assert exc.value.status == 415


# -- generic webhook ----------------------------------------------------------------------------


def test_webhook_labels_are_the_string_fields() -> None:
    raw = {**webhook_body("wh1"), "event_id": "evt-9"}
    [event] = webhook.normalise(
        webhook.WebhookBody.model_validate(raw),
        {"X-RB-Event-Id": "evt-9"},  # may repeat the signed event id
        runbook_id="rb-1",
        received_at=NOW,
    )
    assert event.source == "webhook"
    assert event.dedupe_id == "evt-9"
    assert event.runbook_id == "rb-1"
    assert event.labels == {
        "event": "deploy.failed",
        "service": "checkout",
        "rb_test": "wh1",
        "event_id": "evt-9",
    }
    assert event.payload == raw
    assert msg_id(event) == "webhook:rb-1:evt-9"


def test_webhook_event_id_comes_from_the_signed_content() -> None:
    body = webhook.WebhookBody.model_validate({"a": "b"})
    [one] = webhook.normalise(body, {}, runbook_id="rb-1", signed_id="s" * 32)
    assert one.dedupe_id == "s" * 32
    [one] = webhook.normalise(body, {}, runbook_id="rb-1")
    [two] = webhook.normalise(body, {}, runbook_id="rb-1")
    assert one.dedupe_id != two.dedupe_id and len(one.dedupe_id) == 32
    with pytest.raises(ProblemError) as exc:  # the header is not signed: it may not differ
        webhook.normalise(body, {"X-RB-Event-Id": "evt-9"}, runbook_id="rb-1")
    assert exc.value.status == 400


def test_webhook_rejects_bad_event_ids_and_non_objects() -> None:
    body = webhook.WebhookBody.model_validate({})
    with pytest.raises(ProblemError) as exc:
        webhook.normalise(body, {"x-rb-event-id": "x" * 300}, runbook_id="rb-1")
    assert exc.value.status == 400
    with pytest.raises(ProblemError) as exc:
        base.parse(webhook.WebhookBody, b"[1, 2]")
    assert problem(exc) == (422, ["body"])


# -- bodies -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body", [b"", b"   ", b"{", b"{'a': 1}", b'{"a": NaN}', b"\xff\xfe{}", b"[" * 100_000 + b"]" * 100_000]
)
def test_malformed_bodies_are_400(body: bytes) -> None:
    with pytest.raises(ProblemError) as exc:
        base.parse_json(body)
    assert exc.value.status == 400
    assert exc.value.slug == "invalid-body"


def test_json_with_bom_is_accepted() -> None:
    assert base.parse_json(b"\xef\xbb\xbf" + json.dumps({"a": 1}).encode()) == {"a": 1}


# -- signatures ---------------------------------------------------------------------------------


def test_pagerduty_signature_any_of_several_matches() -> None:
    body = encode(pagerduty_webhook("sig1"))
    good = signatures.sign(signatures.PAGERDUTY, PD_SECRET, body)
    other = signatures.sign(signatures.PAGERDUTY, "old-secret", body)
    signatures.verify(signatures.PAGERDUTY, PD_SECRET, body, good)
    signatures.verify(signatures.PAGERDUTY, PD_SECRET, body, f"{other}, {good.upper().replace('V1=', 'v1=')}")
    signatures.verify(signatures.PAGERDUTY, PD_SECRET, body, f"v0=abc,{good}")


@pytest.mark.parametrize(
    ("secret", "header", "slug"),
    [
        (None, "v1=00", "signature-not-configured"),
        (PD_SECRET, None, "signature-required"),
        (PD_SECRET, "", "signature-required"),
        (PD_SECRET, "v1=00", "invalid-signature"),
        (PD_SECRET, "sha256=00", "invalid-signature"),
        (PD_SECRET, "v1=é", "invalid-signature"),
    ],
)
def test_pagerduty_signature_refusals(secret: str | None, header: str | None, slug: str) -> None:
    with pytest.raises(signatures.SignatureError) as exc:
        signatures.verify(signatures.PAGERDUTY, secret, b"{}", header)
    assert exc.value.slug == slug


def test_signature_over_another_body_fails() -> None:
    header = signatures.sign(signatures.WEBHOOK, "s", b'{"a": 1}')
    signatures.verify(signatures.WEBHOOK, "s", b'{"a": 1}', header)
    with pytest.raises(signatures.SignatureError):
        signatures.verify(signatures.WEBHOOK, "s", b'{"a": 2}', header)


def test_secret_comes_from_settings_field_or_environment() -> None:
    class WithField:
        webhook_secret = SecretStr("from-settings")
        pagerduty_webhook_secret = None

    class Without:
        pass

    env = {"RB_WEBHOOK_SECRET": "from-env", "RB_PAGERDUTY_WEBHOOK_SECRET": ""}
    assert signatures.secret_for(signatures.WEBHOOK, WithField(), env) == "from-settings"
    assert signatures.secret_for(signatures.PAGERDUTY, WithField(), env) is None
    assert signatures.secret_for(signatures.WEBHOOK, Without(), env) == "from-env"
    assert signatures.secret_for(signatures.PAGERDUTY, Without(), env) is None  # empty = unset
