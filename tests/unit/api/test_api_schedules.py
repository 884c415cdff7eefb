"""GET /api/v1/schedules and pause/resume, against the real app on SQLite."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx
from api_auth_support import bearer

YAML = """id: {rid}
name: Nightly
triggers:
  - cron: "30 2 * * *"
    timezone: Europe/Berlin
  - alert: {{source: alertmanager, match: {{alertname: X}}}}
  - cron: "*/5 * * * * *"
steps:
  - {{id: a, type: transform}}
"""


async def create(client: httpx.AsyncClient, rid: str, approve: bool = True) -> None:
    """Created by the default admin, approved by a second one (four eyes)."""
    response = await client.post(
        "/api/v1/runbooks", content=YAML.format(rid=rid), headers={"Content-Type": "application/yaml"}
    )
    assert response.status_code == 201, response.text
    if approve:
        other = await client.post("/api/v1/keys", json={"name": f"approver-{rid}", "roles": ["admin"]})
        approver = {"Authorization": f"Bearer {other.json()['key']}"}
        assert (await client.post(f"/api/v1/runbooks/{rid}/approve", headers=approver)).status_code == 200


async def test_only_approved_cron_triggers_are_listed_with_next_fire_times(
    client: httpx.AsyncClient, runbook_id: str
) -> None:
    await create(client, runbook_id + "-draft", approve=False)
    await create(client, runbook_id)
    items = (await client.get("/api/v1/schedules")).json()["items"]
    mine = [i for i in items if i["runbook_id"].startswith(runbook_id)]
    assert [(i["runbook_id"], i["trigger_index"]) for i in mine] == [(runbook_id, 0), (runbook_id, 2)]
    nightly = datetime.fromisoformat(mine[0]["next_fire_time"])
    assert (nightly.hour, nightly.minute) == (2, 30) and nightly.utcoffset() is not None
    assert mine[0]["timezone"] == "Europe/Berlin" and mine[0]["paused"] is False


async def test_pause_and_resume(client: httpx.AsyncClient, runbook_id: str, make_key: Any) -> None:
    await create(client, runbook_id)
    ops = bearer(await make_key("ops", "operator"))
    paused = await client.post(f"/api/v1/schedules/{runbook_id}/2/pause", headers=ops)
    assert paused.status_code == 200 and paused.json()["paused"] is True
    assert paused.json()["next_fire_time"] is None
    items = {
        (i["runbook_id"], i["trigger_index"]): i
        for i in (await client.get("/api/v1/schedules")).json()["items"]
    }
    assert items[(runbook_id, 2)]["paused"] and not items[(runbook_id, 0)]["paused"]
    resumed = await client.post(f"/api/v1/schedules/{runbook_id}/2/resume")
    assert resumed.status_code == 200 and resumed.json()["paused"] is False
    assert resumed.json()["next_fire_time"] is not None


async def test_unknown_schedules_are_404_problems(client: httpx.AsyncClient, runbook_id: str) -> None:
    await create(client, runbook_id)
    for path in (
        f"/api/v1/schedules/{runbook_id}/1/pause",
        f"/api/v1/schedules/{runbook_id}/9/pause",
        "/api/v1/schedules/nope-nope/0/resume",
    ):
        response = await client.post(path)
        assert response.status_code == 404, path
        assert response.headers["content-type"].startswith("application/problem+json")
