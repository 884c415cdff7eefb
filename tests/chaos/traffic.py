"""The chaos run's traffic through the front doors (issue 19), beside the test's own triggers
straight onto the stream: example runbooks executed through the API under an Idempotency-Key,
an Alertmanager webhook whose alerts a routed runbook matches, and a cron schedule firing every
few seconds on both schedulers. The API is killed and restarted like every other service, so a
request is repeated (same key, same alert) until it gets an answer that settles it: accepted
(202) or refused (429); anything else fails the run."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from rb_common.routing import deterministic_id

RUNBOOKS = Path(__file__).resolve().parents[2] / "runbooks"
ALERT_TOKEN = "chaos-alertmanager-token-7c1d"
CRON_SECONDS = 5

ALERT_RUNBOOK = """
id: chaos-alert
name: On a chaos alert
triggers:
  - alert: {source: alertmanager, match: {alertname: ChaosAlert}}
    params: {instance: "${trigger.labels.instance}"}
parameters:
  type: object
  required: [instance]
  properties: {instance: {type: string}}
steps:
  - {id: note, type: transform, inputs: {instance: "${params.instance}"}, outputs: {instance: $.instance}}
"""

CRON_RUNBOOK = f"""
id: chaos-cron
name: Every {CRON_SECONDS} seconds
triggers:
  - cron: "*/{CRON_SECONDS} * * * * *"
    params: {{fired: "${{trigger.fire_time}}"}}
parameters:
  type: object
  properties: {{fired: {{type: string}}}}
steps:
  - {{id: note, type: transform, inputs: {{fired: "${{params.fired}}"}}, outputs: {{fired: $.fired}}}}
"""

# What each API execution asks for: the example, its parameters.
EXAMPLES: list[tuple[str, dict[str, Any]]] = [
    ("rb-000-hello", {"wait_seconds": 0.2}),
    ("rb-014-sub-runbook", {"greeting": "chaos"}),
    ("rb-011-branch-loop", {"mode": "report", "hosts": ["web-1", "web-2"]}),
]


def alert_notification(fingerprint: str) -> dict[str, Any]:
    """An Alertmanager webhook (version 4) with one firing alert."""
    return {
        "version": "4",
        "groupKey": '{}:{alertname="ChaosAlert"}',
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "rb",
        "groupLabels": {"alertname": "ChaosAlert"},
        "commonLabels": {"alertname": "ChaosAlert"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example",
        "alerts": [
            {
                "status": "firing",
                "fingerprint": fingerprint,
                "startsAt": datetime.now(UTC).isoformat(),
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus.example/graph",
                "labels": {"alertname": "ChaosAlert", "instance": f"host-{fingerprint[:4]}"},
                "annotations": {"summary": "chaos"},
            }
        ],
    }


@dataclass
class ApiTraffic:
    base: str  # …/api/v1
    admin_key: str
    accepted: dict[str, float] = field(default_factory=dict)  # execution id -> when (monotonic)
    by_runbook: dict[str, set[str]] = field(default_factory=dict)
    alerts: dict[str, float] = field(default_factory=dict)  # dedupe id -> when
    refused: list[str] = field(default_factory=list)  # what a 429 turned away
    retries: int = 0
    cron_since: datetime | None = None

    def client(self, key: str | None = None) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.base, headers={"Authorization": f"Bearer {key or self.admin_key}"}, timeout=10
        )

    async def _settled(self, what: str, send: Any, deadline: float = 90.0) -> httpx.Response:
        """`send()` again until an answer that settles it (2xx, 429) or a 4xx that is a bug."""
        end = time.monotonic() + deadline
        while True:
            try:
                response: httpx.Response = await send()
                if response.status_code < 500:
                    return response
            except httpx.HTTPError:
                pass
            if time.monotonic() > end:
                raise AssertionError(f"{what}: no answer for {deadline:.0f} s")
            self.retries += 1
            await asyncio.sleep(0.5)

    async def setup(self) -> None:
        """Register and approve the examples and the alert and cron runbooks (four eyes: a second
        admin approves what the bootstrap admin created)."""
        async with self.client() as admin:
            made = await self._settled(
                "second admin", lambda: admin.post("/keys", json={"name": "approver", "roles": ["admin"]})
            )
            assert made.status_code == 201, made.text
            texts = [(RUNBOOKS / name / "runbook.yaml").read_text() for name, _ in EXAMPLES]
            texts += [ALERT_RUNBOOK, CRON_RUNBOOK]
            async with self.client(made.json()["key"]) as approver:
                for text in texts:
                    created = await self._settled(
                        "create",
                        lambda t=text: admin.post(
                            "/runbooks", content=t, headers={"Content-Type": "application/yaml"}
                        ),
                    )
                    assert created.status_code == 201, created.text
                    runbook_id = created.json()["id"]
                    approved = await self._settled(
                        "approve", lambda r=runbook_id: approver.post(f"/runbooks/{r}/approve")
                    )
                    assert approved.status_code == 200, approved.text
        self.cron_since = datetime.now(UTC)

    async def execute(self, turn: int) -> None:
        runbook_id, params = EXAMPLES[turn % len(EXAMPLES)]
        key = uuid.uuid4().hex
        async with self.client() as client:
            response = await self._settled(
                f"execute {runbook_id}",
                lambda: client.post(
                    f"/runbooks/{runbook_id}/execute",
                    json={"params": params},
                    headers={"Idempotency-Key": key},
                ),
            )
        if response.status_code == 429:
            self.refused.append(key)
            return
        assert response.status_code == 202, response.text
        execution_id = response.json()["execution_id"]
        self.accepted[execution_id] = time.monotonic()
        self.by_runbook.setdefault(runbook_id, set()).add(execution_id)

    async def alert(self) -> None:
        fingerprint = uuid.uuid4().hex[:16]
        body = alert_notification(fingerprint)
        async with httpx.AsyncClient(
            base_url=self.base, headers={"Authorization": f"Bearer {ALERT_TOKEN}"}, timeout=10
        ) as client:
            response = await self._settled("alert", lambda: client.post("/triggers/alertmanager", json=body))
        if response.status_code == 429:
            self.refused.append(fingerprint)
            return
        assert response.status_code == 202, response.text
        answer = response.json()
        for dedupe_id in [*answer["trigger_ids"], *answer["duplicate_ids"]]:
            self.alerts[dedupe_id] = time.monotonic()

    async def run(self, stop: asyncio.Event, interval: float) -> None:
        """An execution of an example, and every fourth turn an alert, every `interval` seconds."""
        turn = 0
        while not stop.is_set():
            if turn % 4 == 3:
                await self.alert()
            else:
                await self.execute(turn)
            turn += 1
            await asyncio.sleep(interval)

    async def pages(self, path: str, **params: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        async with self.client() as client:
            while True:
                query = {**params, "limit": 500, "offset": len(items)}
                response = await self._settled(path, lambda q=query: client.get(path, params=q))
                page = response.json()["items"]
                items += page
                if len(page) < 500:
                    return items

    async def alert_executions(self, timeout: float = 180.0) -> dict[str, list[str]]:
        """Each accepted alert's executions, once the router has recorded every one of them."""
        deadline = time.monotonic() + timeout
        while True:
            recorded = {a["dedupe_id"]: a for a in await self.pages("/alerts", source="alertmanager")}
            missing = set(self.alerts) - set(recorded)
            if not missing or time.monotonic() > deadline:
                assert not missing, f"{len(missing)} accepted alerts not recorded, e.g. {sorted(missing)[:3]}"
                return {d: list(recorded[d]["execution_ids"]) for d in self.alerts}
            await asyncio.sleep(2)


def cron_executions(since: datetime, until: datetime) -> dict[datetime, str]:
    """The cron runbook's fire times strictly after `since` up to `until`, each with the id of
    the execution it starts (derived from the fire time, as the schedulers derive it)."""
    first = since.replace(microsecond=0) + timedelta(seconds=1)
    while first.second % CRON_SECONDS:
        first += timedelta(seconds=1)
    out: dict[datetime, str] = {}
    while first <= until:
        out[first] = deterministic_id("cron", "chaos-cron", "0", first.isoformat())
        first += timedelta(seconds=CRON_SECONDS)
    return out
