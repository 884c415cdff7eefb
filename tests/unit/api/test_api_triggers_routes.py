"""POST /api/v1/triggers/*: the real app (SQLite + the REAL local NATS) through httpx's ASGI
transport, asserting what reaches `rb.alert.<source>` on the RB_TRIGGERS stream.

The subjects are shared with other suites (and a trigger router may be reading them), so each
test watches them through its own ephemeral ordered consumer (DeliverPolicy.NEW, created before
posting), keeps only messages carrying its unique token, and reads up to a marker it publishes
itself: everything published before the marker has been seen, so "nothing was published" is
exact, not a timeout. Afterwards it deletes exactly the messages it saw (and its markers).
"""

from __future__ import annotations

import base64
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_auth_support import TRIGGER_TOKEN
from nats.js.api import DeliverPolicy
from sqlalchemy import Engine
from test_api_triggers_payloads import (
    PD_SECRET,
    RB_SECRET,
    TOKEN_SETTINGS,
    alertmanager_ids,
    alertmanager_notification,
    binary_event,
    encode,
    fingerprint,
    grafana_notification,
    pagerduty_webhook,
    signed,
    structured_event,
    webhook_body,
)

from rb_api.alerts import signatures
from rb_api.app import create_app
from rb_api.deps import ApiOptions
from rb_common.bus import DEFAULT_NAMES, Bus
from rb_common.memory_bus import memory_bus
from rb_common.messages import AlertEvent
from rb_common.settings import Settings

PROBLEM = "application/problem+json"
SOURCES = ("alertmanager", "grafana", "pagerduty", "cloudevents", "webhook")
BASE = "/api/v1/triggers"
JSON = {"content-type": "application/json"}


class AlertTap:
    """What one test published on rb.alert.<source>, read through ephemeral ordered consumers."""

    def __init__(self, bus: Bus, token: str) -> None:
        self.bus = bus
        self.token = token
        self.subs: dict[str, Any] = {}
        self.seqs: list[int] = []

    async def watch(self, *sources: str) -> None:
        for source in sources or SOURCES:
            self.subs[source] = await self.bus.js.subscribe(
                DEFAULT_NAMES.alert_subject(source), ordered_consumer=True, deliver_policy=DeliverPolicy.NEW
            )

    async def settle(self, source: str) -> list[dict[str, Any]]:
        """Every message with this test's token stored on the subject so far, in stream order."""
        marker = f"rb-test-marker-{uuid.uuid4().hex}"
        event = AlertEvent(source=source, dedupe_id=marker, name=marker, labels={"rb_test_marker": marker})
        ack = await self.bus.js.publish(
            DEFAULT_NAMES.alert_subject(source),
            event.encode(),
            headers={"Nats-Msg-Id": marker},
            stream=DEFAULT_NAMES.triggers_stream,
        )
        self.seqs.append(ack.seq)
        found: list[dict[str, Any]] = []
        while True:
            msg = await self.subs[source].next_msg(timeout=5)
            seq = msg.metadata.sequence.stream
            if seq >= ack.seq:
                return found
            if self.token.encode() in msg.data:
                self.seqs.append(seq)
                found.append(
                    {"headers": dict(msg.headers or {}), "event": AlertEvent.model_validate_json(msg.data)}
                )

    async def nothing_published(self) -> None:
        for source in self.subs:
            assert await self.settle(source) == [], (
                f"something was published on {DEFAULT_NAMES.alert_subject(source)}"
            )

    async def close(self) -> None:
        for sub in self.subs.values():
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        for seq in self.seqs:
            with contextlib.suppress(Exception):
                await self.bus.js.delete_msg(DEFAULT_NAMES.triggers_stream, seq)


@pytest.fixture
def token() -> str:
    return uuid.uuid4().hex


@pytest.fixture
async def tap(bus: Bus, token: str) -> AsyncIterator[AlertTap]:
    t = AlertTap(bus, token)
    await t.watch()
    yield t
    await t.close()


ClientFactory = Callable[..., Awaitable[httpx.AsyncClient]]


@pytest.fixture
async def make_client(
    tmp_path: Path, engine: Engine, bus: Bus, api_options: ApiOptions, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[ClientFactory]:
    """make_client(secrets=True, bus=None): the app with (or without) the HMAC secrets; they are
    set as RB_* environment variables, which a Settings field or the env fallback both read."""
    async with contextlib.AsyncExitStack() as stack:

        async def make(*, secrets: bool = True, use_bus: Bus | None = None) -> httpx.AsyncClient:
            configured = [("RB_PAGERDUTY_WEBHOOK_SECRET", PD_SECRET), ("RB_WEBHOOK_SECRET", RB_SECRET)]
            configured += [(name, TRIGGER_TOKEN) for name in TOKEN_SETTINGS]
            for name, value in configured:
                if secrets:
                    monkeypatch.setenv(name, value)
                else:
                    monkeypatch.delenv(name, raising=False)
            settings = Settings(home=tmp_path / ".rb", nats_url="nats://memory.invalid:4222")
            app = create_app(settings, engine=engine, bus=use_bus or bus, options=api_options)
            await stack.enter_async_context(app.router.lifespan_context(app))
            # The sources that cannot sign send the token (the signed ones ignore it).
            return await stack.enter_async_context(
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app),
                    base_url="http://rb.test",
                    timeout=20,
                    headers={"Authorization": f"Bearer {TRIGGER_TOKEN}"},
                )
            )

        yield make


@pytest.fixture
async def client(make_client: ClientFactory) -> httpx.AsyncClient:
    return await make_client()


def accepted(ids: list[str], duplicates: list[str] | None = None) -> dict[str, Any]:
    duplicates = duplicates or []
    return {
        "accepted": len(ids),
        "duplicates": len(duplicates),
        "trigger_ids": ids,
        "duplicate_ids": duplicates,
    }


def assert_problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = r.json()
    assert body["status"] == status
    return body


async def test_the_tap_sees_what_is_published(tap: AlertTap, bus: Bus, token: str) -> None:
    """The probe the refusal tests rely on does see a publish carrying the token."""
    event = AlertEvent(source="webhook", dedupe_id=f"probe-{token}", labels={"rb_test": token})
    await bus.js.publish(
        DEFAULT_NAMES.alert_subject("webhook"), event.encode(), stream=DEFAULT_NAMES.triggers_stream
    )
    with pytest.raises(AssertionError):
        await tap.nothing_published()


# -- Alertmanager -------------------------------------------------------------------------------


async def test_alertmanager_publishes_one_alert_event_per_alert(
    client: httpx.AsyncClient, tap: AlertTap, token: str
) -> None:
    notification = alertmanager_notification(token)
    ids = alertmanager_ids(notification)
    r = await client.post(f"{BASE}/alertmanager", json=notification)
    assert r.status_code == 202, r.text
    assert r.json() == accepted(ids)

    published = await tap.settle("alertmanager")
    # published concurrently: the stream order of one notification's alerts is not fixed
    assert sorted(m["headers"]["Nats-Msg-Id"] for m in published) == sorted(f"alertmanager:{i}" for i in ids)
    events = {m["event"].dedupe_id: m["event"] for m in published}
    assert set(events) == set(ids)
    resolved = events[ids[2]]
    assert resolved.status == "resolved"
    assert resolved.labels["instance"] == "api-3:8080"
    assert all(e.group == ids and e.group_key == notification["groupKey"] for e in events.values())
    assert all(e.source == "alertmanager" and e.received_at for e in events.values())
    assert events[ids[0]].payload["externalURL"] == "http://alertmanager:9093"


async def test_the_same_notification_three_times_is_stored_once(
    client: httpx.AsyncClient, tap: AlertTap, token: str
) -> None:
    notification = alertmanager_notification(token)
    ids = alertmanager_ids(notification)
    answers = [(await client.post(f"{BASE}/alertmanager", json=notification)) for _ in range(3)]
    assert [a.status_code for a in answers] == [202, 202, 202]
    assert answers[0].json() == accepted(ids)
    assert answers[1].json() == accepted([], ids)
    assert answers[2].json() == accepted([], ids)
    published = await tap.settle("alertmanager")
    assert sorted(m["event"].dedupe_id for m in published) == sorted(ids)  # one message per alert


async def test_a_growing_group_publishes_only_the_new_alert(
    client: httpx.AsyncClient, tap: AlertTap, token: str
) -> None:
    first = alertmanager_notification(token)
    first_ids = alertmanager_ids(first)
    assert (await client.post(f"{BASE}/alertmanager", json=first)).json() == accepted(first_ids)
    grown = alertmanager_notification(token)
    extra = {**grown["alerts"][0], "fingerprint": fingerprint(token, 4), "startsAt": "2025-11-29T10:02:00Z"}
    grown["alerts"].append(extra)
    r = await client.post(f"{BASE}/alertmanager", json=grown)
    new_id = f"{extra['fingerprint']}:2025-11-29T10:02:00Z"
    assert r.json() == accepted([new_id], first_ids)
    published = await tap.settle("alertmanager")
    assert [m["event"].dedupe_id for m in published][-1] == new_id
    assert len(published) == 4
    assert published[-1]["event"].group == [*first_ids, new_id]


async def test_alertmanager_other_version_is_422_naming_the_field(
    client: httpx.AsyncClient, tap: AlertTap, token: str
) -> None:
    notification = alertmanager_notification(token)
    notification["version"] = "3"
    problem = assert_problem(await client.post(f"{BASE}/alertmanager", json=notification), 422)
    assert [e["field"] for e in problem["errors"]] == ["body.version"]
    assert "body.version" in problem["detail"]
    assert problem["type"] == "urn:rb:problem:invalid-request"
    await tap.nothing_published()


# -- Grafana ------------------------------------------------------------------------------------


async def test_grafana_alert_is_published(client: httpx.AsyncClient, tap: AlertTap, token: str) -> None:
    notification = grafana_notification(token)
    alert = notification["alerts"][0]
    expected = f"{alert['fingerprint']}:{alert['startsAt']}"
    r = await client.post(f"{BASE}/grafana", json=notification)
    assert r.status_code == 202, r.text
    assert r.json() == accepted([expected])
    [message] = await tap.settle("grafana")
    assert message["headers"]["Nats-Msg-Id"] == f"grafana:{expected}"
    event = message["event"]
    assert (event.source, event.name, event.status) == ("grafana", "RbTriggersTestDiskFull", "firing")
    assert event.payload["panelURL"] == alert["panelURL"]


# -- PagerDuty ----------------------------------------------------------------------------------


async def test_pagerduty_signed_incident_is_published_once(
    client: httpx.AsyncClient, tap: AlertTap, token: str
) -> None:
    body = encode(pagerduty_webhook(token))
    headers = signed(signatures.PAGERDUTY, PD_SECRET, body)
    event_id = f"01DEN{token.upper()}"
    r = await client.post(f"{BASE}/pagerduty", content=body, headers=headers)
    assert r.status_code == 202, r.text
    assert r.json() == accepted([event_id])
    # The same event again within the replay window is refused: a replay (or a retry of an
    # event already taken) starts nothing.
    again = await client.post(f"{BASE}/pagerduty", content=body, headers=headers)
    assert assert_problem(again, 401)["type"] == "urn:rb:problem:signature-replayed"
    assert again.headers["www-authenticate"].startswith("Signature")
    [message] = await tap.settle("pagerduty")
    assert message["headers"]["Nats-Msg-Id"] == f"pagerduty:{event_id}"
    event = message["event"]
    assert event.status == "firing"
    assert event.labels["event_type"] == "incident.triggered"
    assert event.labels["service"] == "Checkout API"
    assert event.name == "Checkout API error rate above 5%"


async def test_pagerduty_webhook_id_header_is_the_dedupe_id(
    client: httpx.AsyncClient, tap: AlertTap, token: str
) -> None:
    body = encode(pagerduty_webhook(token, "incident.resolved"))
    headers = {**signed(signatures.PAGERDUTY, PD_SECRET, body), "X-Webhook-Id": f"whk-{token}"}
    r = await client.post(f"{BASE}/pagerduty", content=body, headers=headers)
    assert r.json() == accepted([f"whk-{token}"])
    [message] = await tap.settle("pagerduty")
    assert message["event"].status == "resolved"


async def test_pagerduty_accepts_any_of_several_signatures(
    client: httpx.AsyncClient, tap: AlertTap, token: str
) -> None:
    body = encode(pagerduty_webhook(token))
    old = signatures.sign(signatures.PAGERDUTY, "the-previous-secret", body)
    new = signatures.sign(signatures.PAGERDUTY, PD_SECRET, body)
    r = await client.post(
        f"{BASE}/pagerduty", content=body, headers={"X-PagerDuty-Signature": f"{old},{new}"}
    )
    assert r.status_code == 202, r.text
    assert len(await tap.settle("pagerduty")) == 1


@pytest.mark.parametrize(
    ("header", "slug"),
    [
        (None, "signature-required"),
        ("v1=" + "0" * 64, "invalid-signature"),
        ("sig", "invalid-signature"),
        ("wrong-secret", "invalid-signature"),
        ("other-body", "invalid-signature"),
    ],
)
async def test_pagerduty_bad_signatures_are_401_and_publish_nothing(
    client: httpx.AsyncClient, tap: AlertTap, token: str, header: str | None, slug: str
) -> None:
    body = encode(pagerduty_webhook(token))
    if header == "wrong-secret":
        header = signatures.sign(signatures.PAGERDUTY, "not-the-secret", body)
    elif header == "other-body":
        header = signatures.sign(signatures.PAGERDUTY, PD_SECRET, body + b" ")
    headers = {**JSON, **({"X-PagerDuty-Signature": header} if header else {})}
    problem = assert_problem(await client.post(f"{BASE}/pagerduty", content=body, headers=headers), 401)
    assert problem["type"] == f"urn:rb:problem:{slug}"
    assert "X-PagerDuty-Signature" in problem["detail"]
    await tap.nothing_published()


async def test_signature_is_checked_before_the_body(
    client: httpx.AsyncClient, tap: AlertTap, token: str
) -> None:
    bad = b"{not json " + token.encode()
    r = await client.post(f"{BASE}/pagerduty", content=bad, headers=JSON)
    assert_problem(r, 401)
    r = await client.post(
        f"{BASE}/pagerduty", content=bad, headers=signed(signatures.PAGERDUTY, PD_SECRET, bad)
    )
    assert_problem(r, 400)
    await tap.nothing_published()


async def test_without_secrets_signed_sources_refuse_everything(
    make_client: ClientFactory, tap: AlertTap, token: str
) -> None:
    client = await make_client(secrets=False)
    body = encode(pagerduty_webhook(token))
    r = await client.post(
        f"{BASE}/pagerduty", content=body, headers=signed(signatures.PAGERDUTY, PD_SECRET, body)
    )
    problem = assert_problem(r, 401)
    assert problem["type"] == "urn:rb:problem:signature-not-configured"
    assert "RB_PAGERDUTY_WEBHOOK_SECRET" in problem["detail"]
    body = encode(webhook_body(token))
    r = await client.post(
        f"{BASE}/webhook/rb-x", content=body, headers=signed(signatures.WEBHOOK, RB_SECRET, body)
    )
    problem = assert_problem(r, 401)
    assert "RB_WEBHOOK_SECRET" in problem["detail"]
    r = await client.post(f"{BASE}/webhook/rb-x", content=body, headers=JSON)  # unsigned: no better
    assert_problem(r, 401)
    await tap.nothing_published()


# -- CloudEvents --------------------------------------------------------------------------------


async def test_cloudevents_structured_binary_and_batch(
    client: httpx.AsyncClient, tap: AlertTap, token: str
) -> None:
    structured = structured_event(token, 1)
    r = await client.post(
        f"{BASE}/cloudevents",
        content=encode(structured),
        headers={"content-type": "application/cloudevents+json"},
    )
    assert r.json() == accepted([f"//rb-tests/deployments:evt-{token}-1"])

    headers, body = binary_event(token)
    r = await client.post(f"{BASE}/cloudevents", content=body, headers=headers)
    assert r.json() == accepted([f"https://ci.example.com/pipelines/42:bin-{token}"])

    batch = [structured_event(token, 2), structured_event(token, 3), structured_event(token, 1)]
    r = await client.post(
        f"{BASE}/cloudevents",
        content=encode(batch),
        headers={"content-type": "application/cloudevents-batch+json"},
    )
    ids = [f"//rb-tests/deployments:evt-{token}-{n}" for n in (2, 3)]
    assert r.json() == accepted(ids, [f"//rb-tests/deployments:evt-{token}-1"])

    published = await tap.settle("cloudevents")
    assert len(published) == 4
    by_id = {m["event"].dedupe_id: m for m in published}
    binary = by_id[f"https://ci.example.com/pipelines/42:bin-{token}"]
    assert binary["headers"]["Nats-Msg-Id"] == f"cloudevents:https://ci.example.com/pipelines/42:bin-{token}"
    assert binary["event"].payload["data"] == {"pipeline": 42, "stage": "deploy"}
    assert binary["event"].labels["subject"] == "build #42"
    first = by_id[f"//rb-tests/deployments:evt-{token}-1"]["event"]
    assert first.name == "com.example.deployment.failed"
    assert first.payload == structured


@pytest.mark.parametrize(
    ("content", "headers", "status", "fields"),
    [
        (
            b'{"specversion": "1.0", "rbtest": "TOKEN"',
            {"content-type": "application/cloudevents+json"},
            400,
            ["body"],
        ),
        (
            encode({"specversion": "1.0", "source": "s", "type": "t", "rbtest": "TOKEN"}),
            {"content-type": "application/cloudevents+json"},
            422,
            ["body.id"],
        ),
        (
            encode(
                [{"specversion": "1.0", "id": "TOKEN", "source": "s", "type": "t"}, {"specversion": "2.0"}]
            ),
            {"content-type": "application/cloudevents-batch+json"},
            422,
            ["body.1.specversion", "body.1.id", "body.1.source", "body.1.type"],
        ),
        (
            b'{"rbtest": "TOKEN"}',
            {"content-type": "application/json", "ce-specversion": "1.0", "ce-id": "TOKEN"},
            422,
            ["header.ce-source", "header.ce-type"],
        ),
    ],
)
async def test_cloudevents_refusals_publish_nothing(
    client: httpx.AsyncClient,
    tap: AlertTap,
    token: str,
    content: bytes,
    headers: dict[str, str],
    status: int,
    fields: list[str],
) -> None:
    content = content.replace(b"TOKEN", token.encode())
    problem = assert_problem(
        await client.post(f"{BASE}/cloudevents", content=content, headers=headers), status
    )
    assert [e["field"] for e in problem["errors"]] == fields
    await tap.nothing_published()


# -- generic webhook ----------------------------------------------------------------------------


async def test_webhook_signed_with_event_id(client: httpx.AsyncClient, tap: AlertTap, token: str) -> None:
    payload = {**webhook_body(token), "event_id": f"deploy-{token}"}
    body = encode(payload)
    now = int(time.time())
    r = await client.post(
        f"{BASE}/webhook/rb-deploy-guard",
        content=body,
        headers=signed(signatures.WEBHOOK, RB_SECRET, body, t=now),
    )
    assert r.status_code == 202, r.text
    assert r.json() == accepted([f"deploy-{token}"])
    # A resend is signed anew (the same signature again is a replay): the signed event id
    # makes it a duplicate.
    again = await client.post(
        f"{BASE}/webhook/rb-deploy-guard",
        content=body,
        headers=signed(signatures.WEBHOOK, RB_SECRET, body, t=now + 1),
    )
    assert again.json() == accepted([], [f"deploy-{token}"])
    other = await client.post(
        f"{BASE}/webhook/rb-other",
        content=body,
        headers=signed(signatures.WEBHOOK, RB_SECRET, body, t=now + 2),
    )
    assert other.json() == accepted([f"deploy-{token}"])  # another runbook: another event
    # The header may repeat the signed id, nothing else: it is not covered by the signature.
    forged = await client.post(
        f"{BASE}/webhook/rb-other",
        content=body,
        headers={**signed(signatures.WEBHOOK, RB_SECRET, body, t=now + 3), "X-RB-Event-Id": "another"},
    )
    assert assert_problem(forged, 400)["type"] == "urn:rb:problem:invalid-event-id"

    published = await tap.settle("webhook")
    assert [m["headers"]["Nats-Msg-Id"] for m in published] == [
        f"webhook:rb-deploy-guard:deploy-{token}",
        f"webhook:rb-other:deploy-{token}",
    ]
    event = published[0]["event"]
    assert event.runbook_id == "rb-deploy-guard"
    assert event.labels == {
        "event": "deploy.failed",
        "service": "checkout",
        "rb_test": token,
        "event_id": f"deploy-{token}",
    }
    assert event.payload == payload


async def test_webhook_without_event_id_is_one_event_per_signature(
    client: httpx.AsyncClient, tap: AlertTap, token: str
) -> None:
    body = encode(webhook_body(token))
    now = int(time.time())
    answers = [
        (
            await client.post(
                f"{BASE}/webhook/rb-x", content=body, headers=signed(signatures.WEBHOOK, RB_SECRET, body, t=t)
            )
        ).json()
        for t in (now, now + 1)
    ]
    assert [a["accepted"] for a in answers] == [1, 1]
    assert answers[0]["trigger_ids"] != answers[1]["trigger_ids"]
    assert len(await tap.settle("webhook")) == 2


@pytest.mark.parametrize("header", [None, "sha256=" + "0" * 64, "v1=abc", "sha256=zz"])
async def test_webhook_bad_signatures_are_401(
    client: httpx.AsyncClient, tap: AlertTap, token: str, header: str | None
) -> None:
    body = encode(webhook_body(token))
    headers = {**JSON, **({"X-RB-Signature": header} if header else {})}
    problem = assert_problem(await client.post(f"{BASE}/webhook/rb-x", content=body, headers=headers), 401)
    assert "X-RB-Signature" in problem["detail"]
    await tap.nothing_published()


async def test_webhook_refusals(client: httpx.AsyncClient, tap: AlertTap, token: str) -> None:
    listed = encode(["not", "an", "object", token])
    r = await client.post(
        f"{BASE}/webhook/rb-x", content=listed, headers=signed(signatures.WEBHOOK, RB_SECRET, listed)
    )
    assert [e["field"] for e in assert_problem(r, 422)["errors"]] == ["body"]
    body = encode(webhook_body(token))
    r = await client.post(
        f"{BASE}/webhook/Not_A_Runbook", content=body, headers=signed(signatures.WEBHOOK, RB_SECRET, body)
    )
    assert_problem(r, 422)
    r = await client.post(
        f"{BASE}/webhook/rb-x",
        content=body,
        headers={**signed(signatures.WEBHOOK, RB_SECRET, body), "X-RB-Event-Id": "x" * 300},
    )
    assert_problem(r, 400)
    await tap.nothing_published()


# -- every source: malformed, invalid, oversized ------------------------------------------------


def _signed_for(path: str, body: bytes) -> dict[str, str]:
    if path == "pagerduty":
        return signed(signatures.PAGERDUTY, PD_SECRET, body)
    if path.startswith("webhook"):
        return signed(signatures.WEBHOOK, RB_SECRET, body)
    if path == "cloudevents":
        return {"content-type": "application/cloudevents+json"}
    return dict(JSON)


PATHS = ["alertmanager", "grafana", "pagerduty", "cloudevents", "webhook/rb-x"]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    "body", [b"{not json TOKEN", b"", b'{"a": "TOKEN"', b'{"a": NaN, "b": "TOKEN"}', b"\xff\xfe\x00TOKEN"]
)
async def test_malformed_json_is_400_everywhere(
    client: httpx.AsyncClient, tap: AlertTap, token: str, path: str, body: bytes
) -> None:
    body = body.replace(b"TOKEN", token.encode())
    problem = assert_problem(
        await client.post(f"{BASE}/{path}", content=body, headers=_signed_for(path, body)), 400
    )
    assert problem["type"] == "urn:rb:problem:invalid-body"
    await tap.nothing_published()


@pytest.mark.parametrize(
    ("path", "payload", "field"),
    [
        (
            "alertmanager",
            {"version": "4", "alerts": [{"status": "firing", "x": "TOKEN"}]},
            "body.alerts.0.labels",
        ),
        ("alertmanager", [1, "TOKEN"], "body"),
        ("grafana", {"version": "1", "alerts": "TOKEN"}, "body.alerts"),
        ("pagerduty", {"event": {"id": "TOKEN", "event_type": "incident.triggered"}}, "body.event.data"),
        ("pagerduty", {"messages": ["TOKEN"]}, "body.event"),
        ("cloudevents", {"specversion": "1.0", "id": "TOKEN", "type": "t"}, "body.source"),
        ("webhook/rb-x", "TOKEN", "body"),
    ],
)
async def test_schema_violations_are_422_listing_fields(
    client: httpx.AsyncClient, tap: AlertTap, token: str, path: str, payload: Any, field: str
) -> None:
    body = encode(payload).replace(b"TOKEN", token.encode())
    problem = assert_problem(
        await client.post(f"{BASE}/{path}", content=body, headers=_signed_for(path, body)), 422
    )
    assert field in [e["field"] for e in problem["errors"]]
    await tap.nothing_published()


@pytest.mark.parametrize("path", PATHS)
async def test_oversized_bodies_are_413_everywhere(
    client: httpx.AsyncClient, tap: AlertTap, token: str, path: str, api_options: ApiOptions
) -> None:
    notification = alertmanager_notification(token)
    notification["alerts"][0]["annotations"]["description"] = "x" * api_options.max_body_bytes
    body = encode(notification)
    headers = _signed_for(path, body)
    assert_problem(await client.post(f"{BASE}/{path}", content=body, headers=headers), 413)

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted while reading
        for start in range(0, len(body), 8192):
            yield body[start : start + 8192]

    assert_problem(await client.post(f"{BASE}/{path}", content=chunks(), headers=headers), 413)
    await tap.nothing_published()


async def test_a_bus_that_is_down_is_503_with_retry_after(make_client: ClientFactory, token: str) -> None:
    dead = memory_bus()
    await dead.close()
    client = await make_client(use_bus=dead)
    r = await client.post(f"{BASE}/alertmanager", json=alertmanager_notification(token))
    problem = assert_problem(r, 503)
    assert problem["type"] == "urn:rb:problem:bus-unavailable"
    assert r.headers["retry-after"] == "1"


async def test_triggers_are_documented_in_openapi(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    for path in PATHS:
        route = f"{BASE}/{path}".replace("rb-x", "{runbook_id}")
        assert "202" in paths[route]["post"]["responses"], route


# -- sender authentication (issue 12) ------------------------------------------------------------


def _unsigned_bodies(token: str) -> dict[str, tuple[bytes, dict[str, str]]]:
    return {
        "alertmanager": (encode(alertmanager_notification(token)), dict(JSON)),
        "grafana": (encode(grafana_notification(token)), dict(JSON)),
        "cloudevents": (encode(structured_event(token)), {"content-type": "application/cloudevents+json"}),
    }


async def test_webhook_signatures_old_future_replayed_or_wrong_are_401(
    client: httpx.AsyncClient, tap: AlertTap, token: str
) -> None:
    body = encode({**webhook_body(token), "event_id": f"auth-{token}"})
    now = int(time.time())
    url = f"{BASE}/webhook/rb-auth"
    for headers, slug in [
        (dict(JSON), "signature-required"),  # unsigned
        (
            {**JSON, "X-RB-Signature": signatures.sign(signatures.PAGERDUTY, RB_SECRET, body)},
            "signature-required",
        ),
        (signed(signatures.WEBHOOK, RB_SECRET, body, t=now - 400), "signature-expired"),  # too old (window 300 s)
        (signed(signatures.WEBHOOK, RB_SECRET, body, t=now + 400), "signature-expired"),  # from the future
        (signed(signatures.WEBHOOK, "not-the-secret", body, t=now), "invalid-signature"),
        (signed(signatures.WEBHOOK, RB_SECRET, body + b" ", t=now), "invalid-signature"),  # another body
    ]:
        problem = assert_problem(await client.post(url, content=body, headers=headers), 401)
        assert problem["type"] == f"urn:rb:problem:{slug}", (headers, problem)
    await tap.nothing_published()
    good = signed(signatures.WEBHOOK, RB_SECRET, body, t=now - 200)  # inside the window
    first = await client.post(url, content=body, headers=good)
    assert first.status_code == 202, first.text
    replayed = await client.post(url, content=body, headers=good)
    problem = assert_problem(replayed, 401)
    assert problem["type"] == "urn:rb:problem:signature-replayed"
    assert replayed.headers["www-authenticate"] == 'Signature realm="rb-triggers", headers="X-RB-Signature"'
    assert len(await tap.settle("webhook")) == 1


async def test_pagerduty_old_or_replayed_events_are_401(
    client: httpx.AsyncClient, tap: AlertTap, token: str
) -> None:
    stale = pagerduty_webhook(token)
    stale["event"]["occurred_at"] = "2025-11-29T10:06:00.000Z"  # long before the window
    body = encode(stale)
    r = await client.post(
        f"{BASE}/pagerduty", content=body, headers=signed(signatures.PAGERDUTY, PD_SECRET, body)
    )
    assert assert_problem(r, 401)["type"] == "urn:rb:problem:signature-expired"
    await tap.nothing_published()
    body = encode(pagerduty_webhook(token))
    r = await client.post(
        f"{BASE}/pagerduty", content=body, headers=signed(signatures.PAGERDUTY, PD_SECRET, body)
    )
    assert r.status_code == 202, r.text
    # The same event id, signed anew around another body: still a replay.
    other = encode(pagerduty_webhook(token, "incident.acknowledged"))
    r = await client.post(
        f"{BASE}/pagerduty", content=other, headers=signed(signatures.PAGERDUTY, PD_SECRET, other)
    )
    assert assert_problem(r, 401)["type"] == "urn:rb:problem:signature-replayed"
    assert len(await tap.settle("pagerduty")) == 1


@pytest.mark.parametrize("source", ["alertmanager", "grafana", "cloudevents"])
async def test_token_sources_need_the_right_token(
    client: httpx.AsyncClient, tap: AlertTap, token: str, source: str
) -> None:
    body, headers = _unsigned_bodies(token)[source]
    url = f"{BASE}/{source}"
    client.headers.pop("Authorization")
    missing = await client.post(url, content=body, headers=headers)
    assert assert_problem(missing, 401)["type"] == "urn:rb:problem:unauthenticated"
    challenge = missing.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="rb-triggers"')
    assert ("Basic" in challenge) == (source != "cloudevents")
    for wrong in ("Bearer not-the-token", f"Bearer {TRIGGER_TOKEN}x", f"Token {TRIGGER_TOKEN}", "Basic !!!"):
        r = await client.post(url, content=body, headers={**headers, "Authorization": wrong})
        assert assert_problem(r, 401)["type"] == "urn:rb:problem:invalid-credentials", wrong
    await tap.nothing_published()
    r = await client.post(url, content=body, headers={**headers, "Authorization": f"Bearer {TRIGGER_TOKEN}"})
    assert r.status_code == 202, r.text
    assert len(await tap.settle(source)) >= 1


@pytest.mark.parametrize("source", ["alertmanager", "grafana"])
async def test_alertmanager_and_grafana_may_use_basic_auth(
    make_client: ClientFactory, tap: AlertTap, token: str, source: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(f"RB_{source.upper()}_BASIC_AUTH", "rb-sender:s3cret:with-colon")
    client = await make_client()
    body, headers = _unsigned_bodies(token)[source]
    basic = "Basic " + base64.b64encode(b"rb-sender:s3cret:with-colon").decode()
    wrong = "Basic " + base64.b64encode(b"rb-sender:guess").decode()
    r = await client.post(f"{BASE}/{source}", content=body, headers={**headers, "Authorization": wrong})
    assert assert_problem(r, 401)["type"] == "urn:rb:problem:invalid-credentials"
    r = await client.post(f"{BASE}/{source}", content=body, headers={**headers, "Authorization": basic})
    assert r.status_code == 202, r.text


@pytest.mark.parametrize("source", ["alertmanager", "grafana", "cloudevents"])
async def test_an_unconfigured_token_source_refuses_everything_naming_the_setting(
    make_client: ClientFactory, tap: AlertTap, token: str, source: str
) -> None:
    client = await make_client(secrets=False)
    body, headers = _unsigned_bodies(token)[source]
    r = await client.post(
        f"{BASE}/{source}", content=body, headers={**headers, "Authorization": f"Bearer {TRIGGER_TOKEN}"}
    )
    problem = assert_problem(r, 401)
    assert problem["type"] == "urn:rb:problem:trigger-auth-not-configured"
    assert f"RB_{source.upper()}_TOKEN" in problem["detail"]
    assert r.headers["www-authenticate"].startswith("Bearer")
    await tap.nothing_published()
