"""Alerts reach runbooks: published events are matched by the scheduler's router, asynchronously,
and start exactly one execution per alert with the mapped params."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from services_support import Services, api, approve
from test_stack_e2e import Stack

pytestmark = pytest.mark.integration


@pytest.fixture
def stack(services: Services, postgres_database: str) -> Stack:
    return Stack(services, postgres_database)


def routed_runbook(runbook_id: str, source: str) -> str:
    return f"""
id: {runbook_id}
name: Restart on alert
triggers:
  - alert: {{source: {source}, match: {{alertname: HighErrorRate, severity: "~crit.*"}}}}
    params: {{instance: "${{trigger.labels.instance}}", summary: "${{trigger.annotations.summary}}"}}
parameters:
  type: object
  required: [instance]
  properties: {{instance: {{type: string}}, summary: {{type: string}}}}
steps:
  - {{id: note, type: transform, inputs: {{instance: "${{params.instance}}"}}, outputs: {{instance: $.instance}}}}
"""


def register(stack: Stack, text: str) -> None:
    response = api.post(f"{stack.base}/runbooks", content=text, headers={"Content-Type": "application/yaml"})
    assert response.status_code == 201, response.text
    rid = response.json()["id"]
    assert approve(stack.base, rid).status_code == 200


async def executions_of(
    stack: Stack, runbook_id: str, count: int, timeout: float = 30
) -> list[dict[str, Any]]:
    """Waits until `count` executions of the runbook are recorded as finished, then a little
    longer to catch any extra one."""
    deadline = time.monotonic() + timeout
    items: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        items = api.get(f"{stack.base}/executions", params={"runbook_id": runbook_id}).json()["items"]
        if len([i for i in items if i["status"] == "SUCCEEDED"]) >= count:
            await asyncio.sleep(2)
            return api.get(f"{stack.base}/executions", params={"runbook_id": runbook_id}).json()["items"]
        await asyncio.sleep(0.3)
    return items


def publish(env: dict[str, str], tmp_path: Path, event: dict[str, Any]) -> str:
    path = tmp_path / f"{uuid.uuid4().hex}.json"
    path.write_text(json.dumps(event))
    result = subprocess.run(
        [sys.executable, "-m", "rb_cli", "trigger", "--event", str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


async def test_a_published_alert_starts_the_matching_runbook_once(stack: Stack, tmp_path: Path) -> None:
    stack.start("recorder", "executor", "scheduler", "api")
    stack.wait_ready()
    source = "webhook"
    runbook_id = f"alert-{uuid.uuid4().hex[:8]}"
    register(stack, routed_runbook(runbook_id, source))
    dedupe = uuid.uuid4().hex
    alert = {
        "source": source,
        "runbook_id": runbook_id,
        "dedupe_id": dedupe,
        "name": "HighErrorRate",
        "labels": {"alertname": "HighErrorRate", "severity": "critical", "instance": "web-7:9100"},
        "annotations": {"summary": "5xx above 5%"},
    }
    assert "published" in publish(stack.services.env, tmp_path, alert)
    assert "duplicate" in publish(stack.services.env, tmp_path, alert)
    ignored = {**alert, "dedupe_id": uuid.uuid4().hex, "labels": {**alert["labels"], "severity": "warning"}}
    publish(stack.services.env, tmp_path, ignored)
    items = await executions_of(stack, runbook_id, 1, timeout=60)
    assert len(items) == 1, items
    detail = api.get(f"{stack.base}/executions/{items[0]['id']}").json()
    assert detail["steps"][0]["outputs"] == {"instance": "web-7:9100"}
    assert detail["trigger"]["type"] == "alert" and detail["trigger"]["dedupe_id"] == dedupe


def alertmanager_notification(fingerprints: list[str], runbook_marker: str) -> dict[str, Any]:
    """Alertmanager webhook v4: a group of two firing alerts (one matching) and a resolved one."""

    def alert(fp: str, status: str, severity: str, instance: str) -> dict[str, Any]:
        return {
            "status": status,
            "fingerprint": fp,
            "startsAt": "2026-11-22T03:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2026-11-22T03:05:00Z",
            "generatorURL": "http://prometheus.example/graph",
            "labels": {
                "alertname": "HighErrorRate",
                "severity": severity,
                "instance": instance,
                "team": runbook_marker,
            },
            "annotations": {"summary": f"5xx on {instance}"},
        }

    return {
        "version": "4",
        "groupKey": f'{{}}:{{alertname="HighErrorRate",team="{runbook_marker}"}}',
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "rb",
        "groupLabels": {"alertname": "HighErrorRate"},
        "commonLabels": {"alertname": "HighErrorRate"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example",
        "alerts": [
            alert(fingerprints[0], "firing", "critical", "web-1:9100"),
            alert(fingerprints[1], "firing", "warning", "web-2:9100"),
            alert(fingerprints[2], "resolved", "critical", "web-3:9100"),
        ],
    }


async def test_the_same_alertmanager_notification_three_times_is_one_execution(stack: Stack) -> None:
    stack.start("recorder", "executor", "scheduler", "api")
    stack.wait_ready()
    runbook_id = f"am-{uuid.uuid4().hex[:8]}"
    register(
        stack,
        routed_runbook(runbook_id, "alertmanager").replace(
            'severity: "~crit.*"}', f'severity: "~crit.*", team: {runbook_id}}}'
        ),
    )
    body = alertmanager_notification([uuid.uuid4().hex[:16] for _ in range(3)], runbook_id)
    answers = [api.post(f"{stack.base}/triggers/alertmanager", json=body).json() for _ in range(3)]
    assert answers[0]["accepted"] == 3 and answers[0]["duplicates"] == 0
    assert answers[1]["accepted"] == 0 and answers[1]["duplicates"] == 3
    assert answers[2]["duplicates"] == 3
    items = await executions_of(stack, runbook_id, 1, timeout=60)
    assert len(items) == 1, items  # only the firing critical alert matches; resolved starts nothing
    detail = api.get(f"{stack.base}/executions/{items[0]['id']}").json()
    assert detail["steps"][0]["outputs"] == {"instance": "web-1:9100"}
    assert detail["trigger"]["source"] == "alertmanager"


async def test_refused_alerts_publish_nothing_and_start_nothing(stack: Stack) -> None:
    stack.start("recorder", "executor", "scheduler", "api")
    stack.wait_ready()
    runbook_id = f"am-{uuid.uuid4().hex[:8]}"
    register(
        stack,
        routed_runbook(runbook_id, "alertmanager").replace(
            'severity: "~crit.*"}', f'severity: "~crit.*", team: {runbook_id}}}'
        ),
    )
    body = alertmanager_notification([uuid.uuid4().hex[:16] for _ in range(3)], runbook_id)
    bad_version = api.post(f"{stack.base}/triggers/alertmanager", json={**body, "version": "3"})
    assert bad_version.status_code == 422
    assert (
        api.post(
            f"{stack.base}/triggers/alertmanager",
            content=b"{not json",
            headers={"Content-Type": "application/json"},
        ).status_code
        == 400
    )
    huge = {**body, "commonAnnotations": {"x": "y" * 2_000_000}}
    assert api.post(f"{stack.base}/triggers/alertmanager", json=huge).status_code == 413
    unsigned = api.post(f"{stack.base}/triggers/webhook/{runbook_id}", json={"a": "b"})
    assert unsigned.status_code == 401
    await asyncio.sleep(4)
    assert api.get(f"{stack.base}/executions", params={"runbook_id": runbook_id}).json()["items"] == []
