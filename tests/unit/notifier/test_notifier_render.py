"""What a notification says, from a real fold: content, the same in every form, and no secrets."""

from __future__ import annotations

import json
import re

import pytest
from notifier_support import API_TOKEN, DB_PASSWORD, append, first, run_execution, upto

from rb_common.events import Event, EventType
from rb_engine.coordinator import fold
from rb_notifier import render
from rb_notifier.rules import trigger_of
from rb_notifier.summary import Summary, describe_trigger, format_duration, summarize

PUBLIC = "https://rb.example.com"


def summary_for(events: list[Event], event: Event, secrets: tuple[str, ...] = (DB_PASSWORD,)) -> Summary:
    trigger = trigger_of(event.type)
    assert trigger is not None
    return summarize(
        fold(upto(events, event)), event, trigger, public_url=PUBLIC, secrets=secrets, actor="alertmanager"
    )


def all_forms(s: Summary) -> dict[str, str]:
    return {
        "slack_text": render.slack_text(s),
        "slack_blocks": json.dumps(render.slack_blocks(s), ensure_ascii=False),
        "subject": render.email_subject(s),
        "text": render.email_text(s),
        "html": render.email_html(s),
        "webhook": json.dumps(render.webhook_payload(s), ensure_ascii=False),
    }


@pytest.fixture(scope="module")
def failed_run() -> list[Event]:
    return run_execution(fail=True, execution_id="exec-render-failed")


def test_failed_execution_summary(failed_run: list[Event]) -> None:
    s = summary_for(failed_run, first(failed_run, EventType.EXECUTION_FAILED))
    assert (s.runbook_id, s.runbook_name, s.runbook_version) == (
        "nightly-enrichment",
        "Nightly Enrichment",
        "1.2.0",
    )
    assert s.status == "FAILED" and s.headline == "Nightly Enrichment failed"
    assert s.failed_step == "enrich" and s.failed_step_attempts == 2
    assert s.error is not None and s.error.startswith("HTTP 503 from enrich.example.com")
    assert s.reason is None  # it only repeats the failed step's error
    assert s.duration_seconds == pytest.approx(1.0)
    assert s.triggered_by == "alert HighErrorRate (alertmanager)"
    assert s.steps == "1 succeeded, 1 failed"
    assert s.kpis_breached == ["success_rate"]
    kpis = {k.name: k for k in s.kpis or []}
    assert kpis["success_rate"].ok is False and kpis["success_rate"].target == "≥ 0.95"
    assert kpis["duration_seconds"].ok is True and kpis["entities_fetched"].value == "3"
    assert kpis["entities_fetched"].ok is None  # recorded, no target
    assert "error_rate" not in kpis  # built-in without a target
    assert s.link == f"{PUBLIC}/api/v1/executions/exec-render-failed"
    assert s.attention


def test_every_form_carries_the_content(failed_run: list[Event]) -> None:
    s = summary_for(failed_run, first(failed_run, EventType.EXECUTION_FAILED))
    forms = all_forms(s)
    for name in ("slack_blocks", "text", "html", "webhook"):
        body = forms[name]
        for needle in (
            "Nightly Enrichment",
            "nightly-enrichment",
            "FAILED",
            "enrich",
            "HTTP 503 from enrich.example.com",
            "success_rate",
            "0.5",
            "HighErrorRate",
            "exec-render-failed",
            f"{PUBLIC}/api/v1/executions/exec-render-failed",
        ):
            assert needle in body, f"{needle!r} missing from {name}"
    assert forms["subject"] == "[rb] FAILED: Nightly Enrichment (step enrich)"
    assert "step enrich failed" in forms["slack_text"]
    assert "[BREACHED] success_rate = 0.5 (target ≥ 0.95)" in forms["text"]


def test_no_secret_reaches_any_form(failed_run: list[Event]) -> None:
    s = summary_for(failed_run, first(failed_run, EventType.EXECUTION_FAILED))
    for name, body in all_forms(s).items():
        assert DB_PASSWORD not in body, name  # masked from RB_SECRET_*
        assert API_TOKEN not in body, name  # masked by the runner already
        assert "${secrets" not in body, name  # no step inputs that still refer to secrets
        assert "auth_token" not in body, name
    assert "db password ***" in (s.error or "")


def test_slack_blocks_respect_block_kit_limits(failed_run: list[Event]) -> None:
    event = first(failed_run, EventType.EXECUTION_FAILED)
    s = summary_for(failed_run, event)
    s = Summary(**{**s.__dict__, "error": "x" * 10_000, "runbook_name": "N" * 400})
    blocks = render.slack_blocks(s)
    assert blocks[0]["type"] == "header" and len(blocks[0]["text"]["text"]) <= 150
    for block in blocks:
        if block["type"] == "section":
            assert len(block["text"]["text"]) <= 3000
            assert len(block.get("fields", [])) <= 10
            assert all(len(f["text"]) <= 2000 for f in block.get("fields", []))
    [button] = next(b for b in blocks if b["type"] == "actions")["elements"]
    assert button["url"] == s.link


def test_markup_in_errors_is_escaped(failed_run: list[Event]) -> None:
    s = summary_for(failed_run, first(failed_run, EventType.EXECUTION_FAILED))
    s = Summary(**{**s.__dict__, "error": "<script>alert(1)</script> & <@U123>"})
    assert "<script>" not in render.email_html(s) and "&lt;script&gt;" in render.email_html(s)
    blocks = json.dumps(render.slack_blocks(s))
    assert "<@U123>" not in blocks and "&lt;@U123&gt;" in blocks
    assert "<script>" in render.email_text(s)  # plain text stays as it is


def test_started_and_succeeded() -> None:
    events = run_execution(fail=False, execution_id="exec-render-ok")
    started = summary_for(events, first(events, EventType.EXECUTION_STARTED))
    assert started.status == "RUNNING" and started.headline == "Nightly Enrichment started"
    assert started.failed_step is None and started.kpis is None and not started.attention
    done = summary_for(events, first(events, EventType.EXECUTION_SUCCEEDED))
    assert done.status == "SUCCEEDED" and done.failed_step is None and done.kpis_breached is None
    assert done.steps == "2 succeeded"
    text = render.email_text(done)
    assert "Failed step" not in text and "SUCCEEDED" in text
    assert render.email_subject(done) == "[rb] SUCCEEDED: Nightly Enrichment"


def test_approval_requested_hides_inputs_that_refer_to_secrets() -> None:
    events = run_execution(fail=False, execution_id="exec-render-approval")
    events = upto(events, first(events, EventType.STEP_SUCCEEDED))
    event = append(
        events,
        EventType.APPROVAL_REQUESTED,
        {
            "step_id": "ingest",
            "approval_id": "exec-render-approval:ingest",
            "approvers": ["alice", "bob"],
            "min_approvals": 1,
            "timeout": 3600,
            "prompt": "Deploy with ${secrets.API_TOKEN}?",
        },
    )
    s = summary_for(events, event)
    assert s.status == "WAITING_APPROVAL" and s.headline == "Nightly Enrichment is waiting for approval"
    assert s.approval is not None and s.approval.approvers == ["alice", "bob"]
    assert s.approval.description == "Fetch entities from the source API"
    for body in all_forms(s).values():
        assert "${secrets" not in body
    text = render.email_text(s)
    assert (
        "Approval requested: step ingest: Fetch entities from the source API; approvers: alice, bob" in text
    )
    assert render.email_subject(s) == "[rb] APPROVAL NEEDED: Nightly Enrichment (step ingest)"
    [buttons] = [b for b in render.slack_blocks(s) if b.get("block_id") == "rb_approval"]
    assert [(e["action_id"], e["value"]) for e in buttons["elements"]] == [
        ("rb_approve", "exec-render-approval:ingest"),
        ("rb_reject", "exec-render-approval:ingest"),
    ]


def test_assumption_abort_shows_the_reason() -> None:
    events = run_execution(fail=False, execution_id="exec-render-abort")
    events = upto(events, first(events, EventType.EXECUTION_STARTED))
    event = append(events, EventType.EXECUTION_ABORTED, {"reason": "assumption 'queue_is_small' not met"})
    s = summary_for(events, event)
    assert s.status == "ABORTED" and s.failed_step is None
    assert s.reason == "assumption 'queue_is_small' not met"
    assert "Reason: assumption 'queue_is_small' not met" in render.email_text(s)


@pytest.mark.parametrize(
    ("trigger", "actor", "expected"),
    [
        ({"type": "alert", "source": "grafana", "labels": {"alertname": "DiskFull"}}, None, "alert DiskFull (grafana)"),
        ({"alert": {"source": "pagerduty", "alertname": "P1"}}, None, "alert P1 (pagerduty)"),
        ({"type": "cron", "cron": "*/15 * * * *", "fire_time": "2025-01-01T00:15:00Z"}, None,
         "schedule */15 * * * * (fired 2025-01-01T00:15:00Z)"),
        ({"type": "api", "actor": "alice", "revision": 3}, "alice", "alice via api"),
        ({}, "bob", "bob"),
        ({}, None, "unknown"),
    ],
)  # fmt: skip
def test_trigger_descriptions(trigger: dict[str, object], actor: str | None, expected: str) -> None:
    assert describe_trigger(trigger, actor) == expected


def test_durations() -> None:
    assert [format_duration(x) for x in (None, 1.25, 42, 61, 3725)] == [
        "—",
        "1.2s",
        "42s",
        "1m 01s",
        "1h 02m",
    ]


def test_webhook_payload_is_plain_json(failed_run: list[Event]) -> None:
    s = summary_for(failed_run, first(failed_run, EventType.EXECUTION_FAILED))
    payload = json.loads(json.dumps(render.webhook_payload(s)))
    assert payload["event"] == "failed" and payload["status"] == "FAILED"
    assert payload["failed_step"] == {"id": "enrich", "attempts": 2, "error": s.error}
    assert re.match(r"\d{4}-\d\d-\d\dT", payload["time"])
