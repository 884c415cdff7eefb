"""Alert ingestion live: the API service (uvicorn over TCP, PostgreSQL, the real NATS) fed by a
REAL Prometheus Alertmanager (Debian's `prometheus-alertmanager`) and by signed webhooks over HTTP.

What reaches `rb.alert.<source>` is read through ephemeral ordered consumers (DeliverPolicy.NEW,
made before anything is sent), keeping only messages that carry the test's token; the messages a
test saw are deleted afterwards (the subjects are shared with other suites).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from nats.js.api import DeliverPolicy

from rb_api.alerts import signatures
from rb_api.server import serve_api
from rb_common.bus import DEFAULT_NAMES, Bus
from rb_common.messages import AlertEvent
from rb_common.settings import Settings

pytestmark = pytest.mark.integration

NATS_URL = os.environ["RB_TEST_NATS_URL"]
# The admin key the API under test seeds (RB_BOOTSTRAP_ADMIN_KEY) and the clients send.
ADMIN_KEY = "rbk_api-integration-admin-key-0123456789abcdefghijk"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
PD_SECRET = "pd-live-secret-7d2a"
RB_SECRET = "rb-live-secret-0f4e"
AM_TOKEN = "am-live-token-5c1b"  # Alertmanager's http_config bearer token
CE_TOKEN = "ce-live-token-9e3d"
ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Tap:
    """Messages carrying `token` on rb.alert.<source>, through ephemeral ordered consumers."""

    def __init__(self, bus: Bus, token: str) -> None:
        self.bus = bus
        self.token = token.encode()
        self.subs: dict[str, Any] = {}
        self.seen: dict[str, list[AlertEvent]] = {}
        self.seqs: list[int] = []

    async def watch(self, *sources: str) -> None:
        for source in sources:
            self.subs[source] = await self.bus.js.subscribe(
                DEFAULT_NAMES.alert_subject(source), ordered_consumer=True, deliver_policy=DeliverPolicy.NEW
            )
            self.seen[source] = []

    async def wait_for(self, source: str, count: int, timeout: float = 30.0) -> list[AlertEvent]:
        """Read until `count` of this test's messages arrived on the subject (all of them so far)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while len(self.seen[source]) < count:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise AssertionError(f"{len(self.seen[source])} messages on {source}, want {count}")
            with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
                msg = await self.subs[source].next_msg(timeout=min(left, 1.0))
                if self.token in msg.data:
                    self.seqs.append(msg.metadata.sequence.stream)
                    self.seen[source].append(AlertEvent.model_validate_json(msg.data))
        return list(self.seen[source])

    async def settle(self, source: str) -> list[AlertEvent]:
        """Everything of this test stored so far: reads up to a marker published now."""
        marker = f"rb-test-marker-{uuid.uuid4().hex}"
        event = AlertEvent(source=source, dedupe_id=marker, name=marker, labels={"rb_test_marker": marker})
        ack = await self.bus.js.publish(
            DEFAULT_NAMES.alert_subject(source),
            event.encode(),
            headers={"Nats-Msg-Id": marker},
            stream=DEFAULT_NAMES.triggers_stream,
        )
        self.seqs.append(ack.seq)
        while True:
            msg = await self.subs[source].next_msg(timeout=5)
            seq = msg.metadata.sequence.stream
            if seq >= ack.seq:
                return list(self.seen[source])
            if self.token in msg.data:
                self.seqs.append(seq)
                self.seen[source].append(AlertEvent.model_validate_json(msg.data))

    async def close(self) -> None:
        for sub in self.subs.values():
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        for seq in self.seqs:
            with contextlib.suppress(Exception):
                await self.bus.js.delete_msg(DEFAULT_NAMES.triggers_stream, seq)


@pytest.fixture
async def tap(nats_bus: Bus) -> AsyncIterator[Tap]:
    t = Tap(nats_bus, uuid.uuid4().hex)
    yield t
    await t.close()


@pytest.fixture
async def api_url(api_pg_url: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[str]:
    """The API service on a free port, with both HMAC secrets and the senders' tokens configured
    (RB_* variables)."""
    monkeypatch.setenv("RB_PAGERDUTY_WEBHOOK_SECRET", PD_SECRET)
    monkeypatch.setenv("RB_WEBHOOK_SECRET", RB_SECRET)
    monkeypatch.setenv("RB_ALERTMANAGER_TOKEN", AM_TOKEN)
    monkeypatch.setenv("RB_CLOUDEVENTS_TOKEN", CE_TOKEN)
    port = free_port()
    settings = Settings(
        database_url=api_pg_url,
        nats_url=NATS_URL,
        api_addr=f"127.0.0.1:{port}",
        bootstrap_admin_key=ADMIN_KEY,
    )
    stop = asyncio.Event()
    service = asyncio.create_task(serve_api(settings, stop, log_level="warning"))
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=url, timeout=5) as client:
            for _ in range(150):
                if service.done():
                    service.result()  # start-up failed: raise its error
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get("/health/live")).status_code == 200:
                        break
                await asyncio.sleep(0.1)
        yield url
    finally:
        stop.set()
        await asyncio.wait_for(service, 15)


@pytest.fixture
async def alertmanager(tmp_path: Path, api_url: str) -> AsyncIterator[str]:
    """A real Alertmanager whose webhook receiver is the API; its URL."""
    if ALERTMANAGER is None:
        pytest.skip("needs Debian's prometheus-alertmanager (apt-get install prometheus-alertmanager)")
    port = free_port()
    config = tmp_path / "alertmanager.yml"
    config.write_text(
        "route:\n"
        "  receiver: rb\n"
        "  group_by: [alertname]\n"
        # Long enough for both alerts of one POST to join the first notification (the alerts start
        # "now": Alertmanager flushes a new group at once when an alert started over group_wait ago).
        "  group_wait: 3s\n"
        "  group_interval: 1s\n"
        "  repeat_interval: 1h\n"
        "receivers:\n"
        "  - name: rb\n"
        "    webhook_configs:\n"
        f"      - url: {api_url}/api/v1/triggers/alertmanager\n"
        "        send_resolved: true\n"
        # Alertmanager cannot sign: it sends the bearer token rb expects (RB_ALERTMANAGER_TOKEN).
        "        http_config:\n"
        "          authorization:\n"
        "            type: Bearer\n"
        f"            credentials: {AM_TOKEN}\n"
    )
    log_path = tmp_path / "alertmanager.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                ALERTMANAGER,
                f"--config.file={config}",
                f"--storage.path={tmp_path / 'am-data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--cluster.listen-address=",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=url, timeout=1) as client:
            for _ in range(100):
                if proc.poll() is not None:
                    raise AssertionError(f"alertmanager exited: {log_path.read_text()}")
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get("/-/ready")).status_code == 200:
                        break
                await asyncio.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


async def test_real_alertmanager_notifications_are_deduplicated(alertmanager: str, tap: Tap) -> None:
    await tap.watch("alertmanager")
    token = tap.token.decode()
    alertname = f"RbLiveTest{token[:8]}"
    # Not in the past: an alert whose start is older than group_wait makes Alertmanager flush its
    # group at once, so the second alert of the POST could miss the first notification.
    started = _rfc3339(datetime.now(UTC))

    def alert(instance: str, ends: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "labels": {
                "alertname": alertname,
                "instance": instance,
                "severity": "critical",
                "rb_test": token,
            },
            "annotations": {"summary": f"errors on {instance}"},
            "startsAt": started,
            "generatorURL": "http://prometheus.test/graph",
        }
        if ends:
            out["endsAt"] = ends
        return out

    async with httpx.AsyncClient(base_url=alertmanager, timeout=5) as am:
        r = await am.post("/api/v2/alerts", json=[alert("a:1"), alert("b:1")])
        assert r.status_code == 200, r.text
        firing = await tap.wait_for("alertmanager", 2)
        assert {e.labels["instance"] for e in firing} == {"a:1", "b:1"}
        for event in firing:
            assert event.status == "firing"
            assert event.name == alertname
            assert event.starts_at == started
            assert event.dedupe_id == f"{event.payload['fingerprint']}:{started}"
            assert sorted(event.group) == sorted(e.dedupe_id for e in firing)
            assert event.group_key is not None and alertname in event.group_key
            assert event.payload["groupLabels"] == {"alertname": alertname}

        # b resolves: Alertmanager notifies the group again (a still firing, b resolved); only the
        # resolution is new, the repeat of a is a duplicate on the stream.
        r = await am.post("/api/v2/alerts", json=[alert("b:1", ends=_rfc3339(datetime.now(UTC)))])
        assert r.status_code == 200, r.text
        everything = await tap.wait_for("alertmanager", 3)
        resolved = everything[2]
        assert resolved.status == "resolved"
        assert resolved.labels["instance"] == "b:1"
        assert resolved.dedupe_id == f"{resolved.payload['fingerprint']}:{started}:resolved"
        await asyncio.sleep(2.5)  # more group intervals: further repeats change nothing
        assert len(await tap.settle("alertmanager")) == 3

        metrics = (await am.get("/metrics")).text
    failed = [
        line
        for line in metrics.splitlines()
        if line.startswith("alertmanager_notifications_failed_total") and 'integration="webhook"' in line
    ]
    assert failed and all(line.endswith(" 0") for line in failed), failed


async def test_signed_sources_and_limits_over_tcp(api_url: str, tap: Tap) -> None:
    await tap.watch("pagerduty", "webhook", "cloudevents")
    token = tap.token.decode()
    incident = {
        "event": {
            "id": f"01LIVE{token}",
            "event_type": "incident.triggered",
            "resource_type": "incident",
            "occurred_at": datetime.now(UTC).isoformat(),
            "agent": None,
            "client": None,
            "data": {
                "id": "Q1LIVE",
                "type": "incident",
                "title": f"Live {token}",
                "status": "triggered",
                "urgency": "high",
                "service": {"id": "PSVC", "summary": "Checkout API", "type": "service_reference"},
                "priority": None,
            },
        }
    }
    pd_body = json.dumps(incident).encode()
    rb_body = json.dumps({"service": "checkout", "rb_test": token, "event_id": f"live-{token}"}).encode()
    async with httpx.AsyncClient(base_url=api_url, timeout=10) as client:
        signature = signatures.sign(signatures.PAGERDUTY, PD_SECRET, pd_body)
        headers = {"Content-Type": "application/json", "X-PagerDuty-Signature": signature}
        r = await client.post("/api/v1/triggers/pagerduty", content=pd_body, headers=headers)
        assert r.status_code == 202, r.text
        assert r.json()["trigger_ids"] == [f"01LIVE{token}"]
        forged = {**headers, "X-PagerDuty-Signature": signatures.sign(signatures.PAGERDUTY, "guess", pd_body)}
        r = await client.post("/api/v1/triggers/pagerduty", content=pd_body, headers=forged)
        assert r.status_code == 401
        assert r.headers["content-type"].startswith("application/problem+json")

        headers = {
            "Content-Type": "application/json",
            "X-RB-Signature": signatures.sign(signatures.WEBHOOK, RB_SECRET, rb_body),
        }
        r = await client.post("/api/v1/triggers/webhook/rb-live-target", content=rb_body, headers=headers)
        assert r.status_code == 202, r.text
        replayed = await client.post(
            "/api/v1/triggers/webhook/rb-live-target", content=rb_body, headers=headers
        )
        assert replayed.status_code == 401 and "WWW-Authenticate" in replayed.headers
        resent = {
            **headers,
            "X-RB-Signature": signatures.sign(signatures.WEBHOOK, RB_SECRET, rb_body, t=int(time.time()) + 1),
        }
        r = await client.post("/api/v1/triggers/webhook/rb-live-target", content=rb_body, headers=resent)
        assert r.json() == {
            "accepted": 0,
            "duplicates": 1,
            "trigger_ids": [],
            "duplicate_ids": [f"live-{token}"],
        }

        r = await client.post(
            "/api/v1/triggers/cloudevents",
            content=b'{"n": 1}',
            headers={
                "Content-Type": "application/json",
                "Authorization": f"Bearer {CE_TOKEN}",
                "ce-specversion": "1.0",
                "ce-id": f"live-{token}",
                "ce-source": "/rb/live%20tests",
                "ce-type": "com.example.live",
            },
        )
        assert r.status_code == 202, r.text
        assert r.json()["trigger_ids"] == [f"/rb/live tests:live-{token}"]

        # over the default 1 MiB limit: refused from Content-Length, before anything is read
        huge = json.dumps({"rb_test": token, "blob": "x" * (1024 * 1024)}).encode()
        headers = {
            "Content-Type": "application/json",
            "X-RB-Signature": signatures.sign(signatures.WEBHOOK, RB_SECRET, huge),
        }
        r = await client.post("/api/v1/triggers/webhook/rb-live-target", content=huge, headers=headers)
        assert r.status_code == 413

        metrics = (await client.get("/metrics", headers=ADMIN)).text
    assert 'route="/api/v1/triggers/pagerduty",status="202"' in metrics
    assert 'route="/api/v1/triggers/webhook/{runbook_id}",status="202"' in metrics

    [pd] = await tap.settle("pagerduty")
    assert (pd.name, pd.labels["service"], pd.status) == (f"Live {token}", "Checkout API", "firing")
    [wh] = await tap.settle("webhook")
    assert (wh.runbook_id, wh.dedupe_id, wh.labels) == (
        "rb-live-target",
        f"live-{token}",
        {"service": "checkout", "rb_test": token, "event_id": f"live-{token}"},
    )
    [ce] = await tap.settle("cloudevents")
    assert ce.labels["source"] == "/rb/live tests" and ce.payload["data"] == {"n": 1}
