"""Registry changes reach the bus as events, alerts carry the registry's sequence, and
GET /api/v1/alerts lists what the router recorded: the real app on SQLite and the real NATS."""

from __future__ import annotations

import contextlib
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from api_auth_support import TRIGGER_TOKEN, bearer
from nats.js.api import DeliverPolicy
from sqlalchemy import Engine
from test_api_triggers_payloads import alertmanager_notification

from rb_common.bus import Bus
from rb_common.messages import AlertEvent
from rb_common.registry_events import last_seq
from rb_scheduler.alert_log import Started, record, record_row

PROBLEM = "application/problem+json"
YAML = """id: {rid}
name: Alerted
version: {version}
triggers:
  - cron: "0 3 * * *"
  - alert: {{source: alertmanager, match: {{alertname: HighErrorRate}}}}
steps:
  - {{id: a, type: transform}}
"""


async def post_yaml(client: httpx.AsyncClient, rid: str, version: str = "1.0.0", put: bool = False) -> None:
    body = YAML.format(rid=rid, version=version)
    headers = {"Content-Type": "application/yaml"}
    if put:
        response = await client.put(f"/api/v1/runbooks/{rid}", content=body, headers=headers)
        assert response.status_code == 200, response.text
    else:
        response = await client.post("/api/v1/runbooks", content=body, headers=headers)
        assert response.status_code == 201, response.text


async def test_every_registry_change_is_an_event_before_the_answer(
    client: httpx.AsyncClient, bus: Bus, runbook_id: str, make_key: Any, approver: dict[str, str]
) -> None:
    await post_yaml(client, runbook_id)  # creates the bucket if this is the first change
    sub = await bus.js.subscribe(
        bus.names.registry_key_subject(runbook_id),
        stream=bus.names.registry_stream,
        ordered_consumer=True,
        deliver_policy=DeliverPolicy.LAST,
    )
    try:
        seqs: list[int] = []

        async def next_change() -> dict[str, Any]:
            msg = await sub.next_msg(timeout=5)
            seqs.append(msg.metadata.sequence.stream)
            # Already acknowledged when the API answered: the registry's sequence covers it.
            assert (await last_seq(bus) or 0) >= seqs[-1]
            return dict(json.loads(msg.data))

        first = await next_change()
        assert first["change"] == "created" and first["revision"] == 1 and first["status"] == "DRAFT"
        assert (
            await client.post(f"/api/v1/runbooks/{runbook_id}/approve", headers=approver)
        ).status_code == 200
        assert (await next_change())["status"] == "APPROVED"
        await post_yaml(client, runbook_id, "1.1.0", put=True)
        assert (await next_change())["change"] == "revised"
        assert (
            await client.post(f"/api/v1/runbooks/{runbook_id}/approve", headers=approver)
        ).status_code == 200
        await next_change()
        ops = bearer(await make_key("ops", "operator"))
        paused = await client.post(f"/api/v1/schedules/{runbook_id}/0/pause", headers=ops)
        assert paused.status_code == 200
        change = await next_change()
        assert (change["change"], change["trigger_index"], change["actor"]) == (
            "schedule_paused",
            0,
            "key:ops",
        )
        assert (await client.post(f"/api/v1/schedules/{runbook_id}/0/resume")).status_code == 200
        assert (await next_change())["change"] == "schedule_resumed"
        rollback = await client.post(f"/api/v1/runbooks/{runbook_id}/rollback", json={"revision": 1})
        assert rollback.status_code == 200
        assert (await next_change())["change"] == "rolled_back"
        assert (await client.post(f"/api/v1/runbooks/{runbook_id}/deprecate")).status_code == 200
        assert (await next_change())["status"] == "DEPRECATED"
        assert (await client.delete(f"/api/v1/runbooks/{runbook_id}")).status_code == 204
        assert (await next_change())["change"] == "deleted"
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        # A refused change is no event.
        assert (await client.post(f"/api/v1/runbooks/{runbook_id}/approve")).status_code == 404
        with contextlib.suppress(TimeoutError):
            extra = await sub.next_msg(timeout=0.3)
            raise AssertionError(f"unexpected change {extra.data!r}")
    finally:
        await sub.unsubscribe()
        await bus.js.purge_stream(
            bus.names.registry_stream, subject=bus.names.registry_key_subject(runbook_id)
        )


async def test_alerts_carry_the_registry_sequence_of_their_arrival(
    client: httpx.AsyncClient, bus: Bus, runbook_id: str, approver: dict[str, str]
) -> None:
    token = uuid.uuid4().hex
    sub = await bus.js.subscribe(
        bus.names.alert_subject("alertmanager"), ordered_consumer=True, deliver_policy=DeliverPolicy.NEW
    )
    try:
        await post_yaml(client, runbook_id)
        assert (
            await client.post(f"/api/v1/runbooks/{runbook_id}/approve", headers=approver)
        ).status_code == 200
        approved_at = await last_seq(bus)
        assert approved_at
        response = await client.post(
            "/api/v1/triggers/alertmanager",
            json=alertmanager_notification(token),
            headers=bearer(TRIGGER_TOKEN),
        )
        assert response.status_code == 202 and response.json()["accepted"] == 3
        seen: list[AlertEvent] = []
        while len(seen) < 3:
            msg = await sub.next_msg(timeout=5)
            event = AlertEvent.model_validate_json(msg.data)
            if event.labels.get("rb_test") == token:
                seen.append(event)
                await bus.js.delete_msg(bus.names.triggers_stream, msg.metadata.sequence.stream)
        assert {event.registry_seq for event in seen} == {approved_at}
    finally:
        await sub.unsubscribe()
        await bus.js.purge_stream(
            bus.names.registry_stream, subject=bus.names.registry_key_subject(runbook_id)
        )


def seed(engine: Engine, token: str) -> list[dict[str, Any]]:
    """Four recorded alerts, one second apart (newest last)."""
    t0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    rows = []
    for n, (source, status, started) in enumerate(
        [
            ("alertmanager", "firing", [Started("rb-a", 2, 1, f"exec-{token}-0", True)]),
            ("alertmanager", "resolved", []),
            ("grafana", "firing", []),
            ("alertmanager", "firing", [Started("rb-a", 2, 1, f"exec-{token}-3", False)]),
        ]
    ):
        event = AlertEvent(
            source=source,
            dedupe_id=f"{token}-{n}",
            status=status,
            name="HighErrorRate",
            labels={"alertname": "HighErrorRate", "n": str(n)},
            annotations={"summary": f"alert {n}"},
            received_at=(t0 + timedelta(seconds=n)).isoformat(),
            registry_seq=40 + n,
        )
        reason = None if started else "no approved runbook matched its labels"
        row = record_row(event, started, reason, t0 + timedelta(seconds=n, milliseconds=5))
        record(engine, row)
        rows.append(row)
    return rows


async def test_recorded_alerts_are_listed_newest_first_with_filters(
    client: httpx.AsyncClient, engine: Engine
) -> None:
    token = uuid.uuid4().hex[:8]
    seed(engine, token)
    everything = (await client.get("/api/v1/alerts")).json()
    assert everything["total"] == 4 and everything["limit"] == 50 and everything["offset"] == 0
    assert [i["dedupe_id"] for i in everything["items"]] == [f"{token}-{n}" for n in (3, 2, 1, 0)]
    newest = everything["items"][0]
    assert newest["matched"] is True and newest["execution_ids"] == [f"exec-{token}-3"]
    assert newest["runbook_ids"] == ["rb-a"] and newest["matches"][0]["started"] is False
    assert newest["summary"] == "alert 3" and newest["labels"]["n"] == "3" and newest["registry_seq"] == 43
    assert newest["received_at"] == "2026-05-01T12:00:03+00:00" and newest["reason"] is None

    unmatched = (await client.get("/api/v1/alerts", params={"matched": "false"})).json()
    assert [i["dedupe_id"] for i in unmatched["items"]] == [f"{token}-2", f"{token}-1"]
    assert all(
        i["reason"] == "no approved runbook matched its labels" and i["execution_ids"] == []
        for i in unmatched["items"]
    )
    matched = (
        await client.get("/api/v1/alerts", params={"matched": "true", "source": "alertmanager"})
    ).json()
    assert [i["dedupe_id"] for i in matched["items"]] == [f"{token}-3", f"{token}-0"]
    resolved = (await client.get("/api/v1/alerts", params={"status": "resolved"})).json()
    assert resolved["total"] == 1 and resolved["items"][0]["status"] == "resolved"
    page = (await client.get("/api/v1/alerts", params={"limit": 2, "offset": 1})).json()
    assert page["total"] == 4 and [i["dedupe_id"] for i in page["items"]] == [f"{token}-2", f"{token}-1"]
    assert (await client.get("/api/v1/alerts", params={"source": "pagerduty"})).json() == {
        "items": [],
        "total": 0,
        "limit": 50,
        "offset": 0,
    }


async def test_a_redelivered_alert_rewrites_its_row(client: httpx.AsyncClient, engine: Engine) -> None:
    token = uuid.uuid4().hex[:8]
    rows = seed(engine, token)
    record(engine, {**rows[0], "routed_at": rows[0]["routed_at"] + timedelta(seconds=30)})
    assert (await client.get("/api/v1/alerts")).json()["total"] == 4


async def test_bad_filters_are_422_problems(client: httpx.AsyncClient) -> None:
    for params in ({"matched": "maybe"}, {"status": "pending"}, {"limit": 0}, {"offset": -1}, {"limit": 501}):
        response = await client.get("/api/v1/alerts", params=params)
        assert response.status_code == 422, (params, response.text)
        assert response.headers["content-type"].startswith(PROBLEM)
        problem = response.json()
        assert problem["status"] == 422 and problem["errors"], problem
