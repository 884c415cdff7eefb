"""The web console in real Chromium against a real stack (issue 17): sign in with an API key, run
rb-000 from its parameter form and watch its DAG turn green live, retry the failed step of a
failed run, approve a pending approval as a second identity, see a replay verdict; a viewer gets
no Run / Approve buttons and the API refuses those calls anyway. Each test saves screenshots."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import httpx
import pytest
from web_support import ROOT, Console, Stack

pytestmark = pytest.mark.integration

RB000 = (ROOT / "runbooks" / "rb-000-hello" / "runbook.yaml").read_text()
STEPS = ["kernel", "load", "pause", "report", "check"]


def node(step: str, status: str = "") -> str:
    return f".step-node[data-step='{step}']" + (f"[data-status='{status}']" if status else "")


def flaky_yaml(runbook_id: str, url: str) -> str:
    return f"""
id: {runbook_id}
name: Flaky probe
version: 1.0.0
owner: web-tests
legal_basis: "tests"
steps:
  - id: probe
    type: http
    inputs: {{url: "{url}"}}
    retry: {{max_attempts: 1}}
    outputs: {{ok: $.ok}}
  - id: after
    type: transform
    depends_on: [probe]
    inputs: {{ok: "${{steps.probe.outputs.ok}}"}}
    outputs: {{ok: $.ok}}
"""


def gate_yaml(runbook_id: str) -> str:
    return f"""
id: {runbook_id}
name: Gate
version: 1.0.0
owner: web-tests
legal_basis: "tests"
steps:
  - id: plan
    type: transform
    inputs: {{what: purge}}
    outputs: {{what: $.what}}
  - id: gate
    type: approval
    depends_on: [plan]
    inputs:
      approvers: ["role:approver"]
      prompt: "Go ahead with ${{steps.plan.outputs.what}} {runbook_id}?"
      require_comment: true
      timeout: 10m
    outputs: {{approved_by: $.approved_by}}
  - id: done
    type: transform
    depends_on: [gate]
    inputs: {{by: "${{steps.gate.outputs.approved_by}}"}}
    outputs: {{by: $.by}}
"""


@pytest.fixture(scope="module")
def rb000(stack: Stack) -> str:
    return stack.register(RB000)


def test_sign_in_run_rb000_from_its_form_and_watch_the_dag_turn_green_live(
    console: Console, stack: Stack, rb000: str
) -> None:
    page = console.page
    console.sign_in(stack.key("web-operator", "operator"))
    page.wait_for_selector(f"tr[data-runbook='{rb000}']")
    page.fill("input[type=search]", "smoke")  # the search filters by tag too
    page.wait_for_selector(f"tr[data-runbook='{rb000}']")
    console.shot("runbooks")
    page.click(f"a[href='#/runbooks/{rb000}']")
    for step in STEPS:
        page.wait_for_selector(node(step))
    page.fill("#param-wait_seconds", "2")  # long enough to see the run in flight
    page.fill("#param-greeting", "hi from the console")
    console.shot("runbook")
    page.click(".param-form button[type=submit]")
    page.wait_for_url("**/#/executions/*")
    # Live: the wait step is seen in flight before it succeeds, without reloading the page.
    page.wait_for_selector(node("pause", "waiting"), timeout=15_000)
    assert page.locator(node("check", "succeeded")).count() == 0
    console.shot("execution-running")
    for step in STEPS:
        page.wait_for_selector(node(step, "succeeded"), timeout=30_000)
    page.wait_for_selector("h1 .badge.status-succeeded")
    execution_id = page.url.rsplit("/", 1)[1]
    detail = stack.wait_status(execution_id, "SUCCEEDED")
    assert detail["trigger"]["actor"].startswith("key:web-operator")
    page.click("button.link:has-text('report')")
    page.wait_for_selector("[data-testid=step-detail] :text('hi from the console, rb')")
    console.shot("execution-succeeded")


def test_open_a_failed_run_and_retry_the_failed_step(console: Console, stack: Stack, http_server: object) -> None:
    server: object = http_server
    server.fail_then_succeed("/flaky", failures=1, body={"ok": True})  # type: ignore[attr-defined]
    runbook_id = stack.register(flaky_yaml(f"web-flaky-{uuid.uuid4().hex[:6]}", server.url_for("/flaky")))  # type: ignore[attr-defined]
    execution_id = stack.execute(runbook_id)
    stack.wait_status(execution_id, "FAILED")
    console.sign_in(stack.key("web-retrier", "operator"))
    console.go("#/executions")
    console.page.wait_for_selector(f"tr[data-execution='{execution_id}'] .status-failed")
    console.page.click(f"tr[data-execution='{execution_id}'] a[href^='#/executions/']")
    console.page.wait_for_selector(node("probe", "failed"))
    console.page.wait_for_selector(node("after", "skipped"))
    assert "HTTP 503" in console.page.locator("ol.log li.error").first.inner_text()  # errors stand out
    console.shot("execution-failed")
    console.page.click("button[data-retry=probe]")
    console.page.wait_for_selector(node("probe", "succeeded"), timeout=30_000)
    console.page.wait_for_selector(node("after", "succeeded"), timeout=30_000)
    console.page.wait_for_selector("h1 .badge.status-succeeded")
    assert stack.wait_status(execution_id, "SUCCEEDED")["status"] == "SUCCEEDED"
    console.shot("execution-retried")


def test_approve_a_pending_approval_as_a_second_identity(console: Console, stack: Stack) -> None:
    runbook_id = stack.register(gate_yaml(f"web-gate-{uuid.uuid4().hex[:6]}"))
    execution_id = stack.execute(runbook_id)  # requested by the admin
    stack.wait_status(execution_id, "WAITING_APPROVAL")
    approval_id = f"{execution_id}:gate"
    console.sign_in(stack.key("web-approver", "approver"))
    console.go("#/approvals")
    card = f"[data-approval='{approval_id}']"
    console.page.wait_for_selector(card, timeout=20_000)
    approve = console.page.locator(f"{card} button:has-text('Approve')")
    assert approve.is_disabled()  # this step requires a comment
    console.page.fill(f"{card} textarea", "checked the plan")
    console.shot("approval-pending")
    approve.click()
    console.page.wait_for_selector(f"[data-approval='{approval_id}'][data-decided=approved]")
    stack.wait_status(execution_id, "SUCCEEDED")
    decided = stack.http.get(f"{stack.base}/approvals/{approval_id}").json()
    assert decided["status"] == "approved"
    assert decided["decisions"][0]["actor"].startswith("key:web-approver")
    assert decided["decisions"][0]["comment"] == "checked the plan"
    console.go(f"#/executions/{execution_id}")
    console.page.wait_for_selector(node("done", "succeeded"))
    console.shot("approval-decided")


def test_replay_verdict(console: Console, stack: Stack, rb000: str) -> None:
    execution_id = stack.execute(rb000, {"wait_seconds": 0})
    stack.wait_status(execution_id, "SUCCEEDED")
    console.sign_in(stack.key("web-auditor", "operator"))
    console.go(f"#/executions/{execution_id}")
    console.page.wait_for_selector(node("check", "succeeded"))
    console.page.click("button:has-text('Replay and verify')")
    verdict = console.page.wait_for_selector("[data-testid=replay-verdict]")
    assert verdict is not None and "Replay verified" in verdict.inner_text()
    console.page.click("button:has-text('Audit record')")
    audit = console.page.wait_for_selector("[data-testid=audit-verdict]")
    assert audit is not None and "intact" in audit.inner_text()
    console.shot("replay-verdict")
    # Keyboard: a focused DAG node opens its step on Enter.
    console.page.focus(".react-flow__node[data-id='report']")
    console.page.keyboard.press("Enter")
    console.page.wait_for_selector("[data-testid=step-detail] h3:has-text('report')")


def test_a_viewer_sees_no_run_or_approve_buttons_and_the_api_refuses_anyway(
    console: Console, stack: Stack, rb000: str
) -> None:
    gate = stack.register(gate_yaml(f"web-gate-{uuid.uuid4().hex[:6]}"))
    pending = stack.execute(gate)
    stack.wait_status(pending, "WAITING_APPROVAL")
    viewer = stack.key("web-viewer", "viewer")
    console.sign_in(viewer)
    console.go(f"#/runbooks/{rb000}")
    console.page.wait_for_selector(node("check"))
    console.page.wait_for_selector(".param-form")
    assert console.page.locator(".param-form button[type=submit]").count() == 0
    assert console.page.locator("text=Running needs the operator role").count() == 1
    console.shot("viewer-runbook")
    console.go("#/approvals")
    card = f"[data-approval='{pending}:gate']"
    console.page.wait_for_selector(card, timeout=20_000)
    assert console.page.locator(f"{card} button").count() == 0
    console.shot("viewer-approvals")
    as_viewer = {"Authorization": f"Bearer {viewer}"}
    run = httpx.post(f"{stack.base}/runbooks/{rb000}/execute", json={"params": {}}, headers=as_viewer)
    assert run.status_code == 403, run.text
    decide = httpx.post(f"{stack.base}/approvals/{pending}:gate/approve", json={"comment": "x"}, headers=as_viewer)
    assert decide.status_code == 403, decide.text


def test_phone_width_and_dark_theme(console: Console, stack: Stack, rb000: str, tmp_path: Path) -> None:
    page = console.page
    page.set_viewport_size({"width": 390, "height": 844})
    console.sign_in(stack.key("web-phone", "viewer"))
    page.wait_for_selector(f"tr[data-runbook='{rb000}']")
    page.click("button[aria-label^='Switch to']")
    theme = page.evaluate("document.documentElement.dataset.theme")
    page.click("button[aria-label^='Switch to']")
    assert page.evaluate("document.documentElement.dataset.theme") != theme  # toggles both ways
    if page.evaluate("document.documentElement.dataset.theme") != "dark":
        page.click("button[aria-label^='Switch to']")
    # Nothing but the tables' own scrolling boxes is wider than the phone.
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    console.shot("phone-dark-runbooks")
    console.go(f"#/runbooks/{rb000}")
    page.wait_for_selector(node("check"))
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    console.shot("phone-dark-runbook")


def test_schedules_pause_and_resume_then_a_versions_diff(console: Console, stack: Stack) -> None:
    runbook_id = f"web-cron-{uuid.uuid4().hex[:6]}"
    text = gate_yaml(runbook_id).replace("legal_basis:", "triggers:\n  - cron: '0 3 * * *'\nlegal_basis:")
    stack.register(text)
    console.sign_in(stack.key("web-author", "operator", "author"))
    console.go("#/schedules")
    row = console.page.locator("tr", has=console.page.locator(f"a:has-text('{runbook_id}')"))
    row.locator("button:has-text('Pause')").click()
    row.locator(".status-paused").wait_for()
    row.locator("button:has-text('Resume')").click()
    row.locator("button:has-text('Pause')").wait_for()
    console.shot("schedules")
    revised = stack.http.put(
        f"{stack.base}/runbooks/{runbook_id}",
        content=text.replace("version: 1.0.0", "version: 1.1.0"),
        headers={"Content-Type": "application/yaml"},
    )
    assert revised.status_code == 200, revised.text
    console.go(f"#/runbooks/{runbook_id}")
    console.page.click("[role=tab]:has-text('Versions')")
    console.page.click("button:has-text('Diff with 1')")
    console.page.wait_for_selector("pre.diff .del:has-text('version: 1.0.0')")
    console.page.wait_for_selector("pre.diff .add:has-text('version: 1.1.0')")
    console.shot("versions-diff")


def test_alerts_received_and_matched(console: Console, stack: Stack) -> None:
    runbook_id = f"web-alert-{uuid.uuid4().hex[:6]}"
    stack.register(
        f"""
id: {runbook_id}
name: On alert
version: 1.0.0
legal_basis: "tests"
triggers:
  - alert: {{source: alertmanager, match: {{alertname: WebConsoleTest, team: {runbook_id}}}}}
    params: {{instance: "${{trigger.labels.instance}}"}}
parameters:
  type: object
  properties: {{instance: {{type: string}}}}
steps:
  - {{id: note, type: transform, inputs: {{instance: "${{params.instance}}"}}, outputs: {{instance: $.instance}}}}
"""
    )
    alert = {
        "status": "firing",
        "fingerprint": uuid.uuid4().hex[:16],
        "startsAt": "2026-11-22T03:00:00Z",
        "labels": {"alertname": "WebConsoleTest", "team": runbook_id, "instance": "web-1:9100"},
        "annotations": {"summary": "5xx on web-1"},
    }
    body = {"version": "4", "status": "firing", "receiver": "rb", "groupKey": runbook_id, "alerts": [alert]}
    posted = stack.http.post(f"{stack.base}/triggers/alertmanager", json=body)
    assert posted.status_code < 300, posted.text
    deadline = time.monotonic() + 30
    routed: list[dict[str, object]] = []
    while not routed and time.monotonic() < deadline:  # the router records it after the API took it
        items = stack.http.get(f"{stack.base}/alerts").json()["items"]
        routed = [a for a in items if runbook_id in a["runbook_ids"] and a["execution_ids"]]
        time.sleep(0.2)
    assert routed, stack.http.get(f"{stack.base}/alerts").text
    console.sign_in(stack.key("web-alerts", "viewer"))
    console.go("#/alerts")
    row = console.page.locator("tr", has=console.page.locator("td:has-text('5xx on web-1')"))
    row.wait_for()
    assert runbook_id in row.inner_text() and "WebConsoleTest" in row.inner_text()
    console.shot("alerts")
    row.locator("a[href^='#/executions/']").first.click()
    console.page.wait_for_selector(node("note", "succeeded"), timeout=30_000)
    console.shot("alert-execution")
