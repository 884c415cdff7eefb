"""Alerts are matched against the registry as of their arrival: the stack as OS processes
(`rb serve api|scheduler|executor|recorder`), real NATS and PostgreSQL.

The scheduler's safety-net reload is set to an hour, so nothing but the registry's change events
can tell the router about an approval or a deprecation."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from services_support import ADMIN, NATS_URL, Services, api, approver_headers
from test_alert_routing import alertmanager_notification, executions_of, routed_runbook
from test_stack_e2e import Stack

from rb_common.bus import connect

pytestmark = pytest.mark.integration


@pytest.fixture
async def stack(services: Services, postgres_database: str, namespace: str) -> AsyncIterator[Stack]:
    yield Stack(services, postgres_database)
    # The registry bucket is not one of the namespace's streams the services fixture deletes.
    bus = await connect(NATS_URL, namespace=namespace, name="rb-tests-cleanup")
    with contextlib.suppress(Exception):
        await bus.js.delete_stream(bus.names.registry_stream)
    await bus.close()


def start(stack: Stack) -> None:
    stack.start("recorder", "executor", "api")
    stack.services.start("scheduler", RB_SCHEDULER_RELOAD_SECONDS="3600")
    stack.wait_ready()


def rb(stack: Stack, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "rb_cli", *args],
        env={**stack.services.env, "COLUMNS": "300"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def team_runbook(runbook_id: str) -> str:
    return routed_runbook(runbook_id, "alertmanager").replace(
        'severity: "~crit.*"}', f'severity: "~crit.*", team: {runbook_id}}}'
    )


async def recorded_alerts(
    stack: Stack, dedupe_ids: set[str], timeout: float = 30, **params: Any
) -> dict[str, dict[str, Any]]:
    """The recorded alerts among `dedupe_ids`, once all of them are there."""
    deadline = time.monotonic() + timeout
    found: dict[str, dict[str, Any]] = {}
    async with httpx.AsyncClient(base_url=stack.base, headers=ADMIN) as client:
        while time.monotonic() < deadline:
            items = (await client.get("/alerts", params={"limit": 500, **params})).json()["items"]
            found = {i["dedupe_id"]: i for i in items if i["dedupe_id"] in dedupe_ids}
            if len(found) == len(dedupe_ids):
                return found
            await asyncio.sleep(0.2)
    raise AssertionError(f"alerts not recorded: {dedupe_ids - set(found)}\n{stack.services.logs()}")


async def test_an_alert_right_after_approval_starts_its_runbook_once(stack: Stack) -> None:
    start(stack)
    second_admin = approver_headers(stack.base)  # four eyes: not the author
    async with httpx.AsyncClient(base_url=stack.base, headers=ADMIN) as client:
        await client.get("/runbooks")  # the connection is open: the timing below is the requests'
        # Create, approve and post within 250 ms (the router's registry watcher cannot have
        # caught up by then). On a loaded machine one round may be slower: then another runbook,
        # another round (each starts its one execution all the same).
        for _ in range(10):
            runbook_id = f"asof-{uuid.uuid4().hex[:8]}"
            body = alertmanager_notification([uuid.uuid4().hex[:16] for _ in range(3)], runbook_id)
            began = time.monotonic()
            created = await client.post(
                "/runbooks", content=team_runbook(runbook_id), headers={"Content-Type": "application/yaml"}
            )
            approved = await client.post(f"/runbooks/{runbook_id}/approve", headers=second_admin)
            posted = await client.post("/triggers/alertmanager", json=body)
            elapsed = time.monotonic() - began
            assert (created.status_code, approved.status_code, posted.status_code) == (201, 200, 202)
            assert posted.json()["accepted"] == 3
            print(f"create + approve + post took {elapsed * 1000:.0f} ms")
            if elapsed < 0.25:
                break
    assert elapsed < 0.25, f"create + approve + post took {elapsed * 1000:.0f} ms"

    items = await executions_of(stack, runbook_id, 1, timeout=60)
    assert len(items) == 1, items
    detail = api.get(f"{stack.base}/executions/{items[0]['id']}").json()
    assert detail["steps"][0]["outputs"] == {"instance": "web-1:9100"}

    # Every alert of the notification is recorded: the matching one with its execution, the
    # other two with the reason they started nothing.
    critical, warning, resolved = posted.json()["trigger_ids"]  # dedupe ids, in order
    alerts = await recorded_alerts(stack, {critical, warning, resolved})
    assert alerts[critical]["matched"] is True
    assert alerts[critical]["execution_ids"] == [items[0]["id"]]
    assert alerts[critical]["runbook_ids"] == [runbook_id]
    assert alerts[critical]["summary"] == "5xx on web-1:9100" and alerts[critical]["status"] == "firing"
    assert alerts[warning]["matched"] is False and alerts[warning]["execution_ids"] == []
    assert alerts[warning]["reason"] == "no approved runbook matched its labels"
    assert alerts[resolved]["status"] == "resolved" and alerts[resolved]["matched"] is False
    assert alerts[resolved]["reason"].startswith("resolved alert ignored")
    unmatched = await recorded_alerts(stack, {warning, resolved}, matched="false", source="alertmanager")
    assert set(unmatched) == {warning, resolved}
    matched = await recorded_alerts(stack, {critical}, matched="true")
    assert matched[critical]["execution_ids"] == [items[0]["id"]]

    # The same through the CLI.
    listed = rb(stack, "alerts", "--unmatched", "--source", "alertmanager", "--json")
    assert {warning, resolved} <= {i["dedupe_id"] for i in json.loads(listed)["items"]}
    table = rb(stack, "alerts", "--limit", "3")
    assert f"-> {runbook_id} {items[0]['id']}" in table and "5xx on web-1:9100" in table
    assert "unmatched: no approved runbook matched its labels" in table and "3 of " in table


async def test_a_deprecated_runbook_stops_matching_at_once(stack: Stack) -> None:
    start(stack)
    runbook_id = f"depr-{uuid.uuid4().hex[:8]}"
    before = alertmanager_notification([uuid.uuid4().hex[:16] for _ in range(3)], runbook_id)
    after = alertmanager_notification([uuid.uuid4().hex[:16] for _ in range(3)], runbook_id)
    async with httpx.AsyncClient(base_url=stack.base, headers=ADMIN) as client:
        created = await client.post(
            "/runbooks", content=team_runbook(runbook_id), headers={"Content-Type": "application/yaml"}
        )
        assert created.status_code == 201
        approved = await client.post(f"/runbooks/{runbook_id}/approve", headers=approver_headers(stack.base))
        assert approved.status_code == 200
        first = (await client.post("/triggers/alertmanager", json=before)).json()["trigger_ids"][0]
        # The executor admits a start on the registry as of the start (rb_executor admission): a
        # deprecation that lands before it refuses the run. So the first run is let start first.
        started = await executions_of(stack, runbook_id, 1, timeout=60)
        assert len(started) == 1, started
        assert (await client.post(f"/runbooks/{runbook_id}/deprecate")).status_code == 200
        last = (await client.post("/triggers/alertmanager", json=after)).json()["trigger_ids"][0]

    alerts = await recorded_alerts(stack, {first, last})
    assert alerts[first]["matched"] is True and len(alerts[first]["execution_ids"]) == 1
    assert alerts[last]["matched"] is False
    assert alerts[last]["reason"] in {
        "no approved runbook matched its labels",
        "no approved runbook has an alert trigger for source 'alertmanager'",
    }
    assert alerts[last]["registry_seq"] > alerts[first]["registry_seq"]
    items = await executions_of(stack, runbook_id, 1, timeout=60)
    assert [i["id"] for i in items] == alerts[first]["execution_ids"]
