"""The API on real PostgreSQL and NATS: readiness, registry + execute with idempotency on
PostgreSQL, and the service (`serve_api`, real uvicorn over TCP) streaming SSE live."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from nats.js.api import AckPolicy, ConsumerConfig

from rb_api.app import create_app
from rb_api.server import serve_api
from rb_common.bus import DEFAULT_NAMES, Bus, append_event
from rb_common.events import TERMINAL_EVENTS, Event
from rb_common.loader import load_runbook_text
from rb_common.ports import InMemoryEventStore
from rb_common.settings import Settings
from rb_engine.clock import FakeClock
from rb_engine.runner import PluginExecutor, Runner, RunRequest
from rb_engine.steps.registry import default_registry

pytestmark = pytest.mark.integration

NATS_URL = os.environ["RB_TEST_NATS_URL"]
# The admin key the API under test seeds (RB_BOOTSTRAP_ADMIN_KEY) and the clients send.
ADMIN_KEY = "rbk_api-integration-admin-key-0123456789abcdefghijk"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


def runbook_yaml(runbook_id: str) -> str:
    return (
        f"id: {runbook_id}\n"
        "name: API integration\n"
        "version: 1.0.0\n"
        "legal_basis: Integration tests\n"
        "parameters:\n"
        "  type: object\n"
        "  properties: {n: {type: integer, default: 5}}\n"
        "steps:\n"
        "  - id: only\n"
        "    type: transform\n"
        "    inputs: {n: '${params.n}'}\n"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def pending_triggers(bus: Bus, runbook_id: str) -> list[dict[str, Any]]:
    """Messages on the runbook's trigger subject, read (and acked) through a private consumer."""
    name = f"api-int-probe-{uuid.uuid4().hex[:10]}"
    subject = DEFAULT_NAMES.trigger_subject(runbook_id)
    info = await bus.js.add_consumer(
        DEFAULT_NAMES.triggers_stream,
        ConsumerConfig(
            name=name, filter_subject=subject, ack_policy=AckPolicy.EXPLICIT, inactive_threshold=60.0
        ),
    )
    try:
        sub = await bus.js.pull_subscribe_bind(name, stream=DEFAULT_NAMES.triggers_stream)
        msgs = await sub.fetch(info.num_pending, timeout=5) if info.num_pending else []
        for msg in msgs:
            await msg.ack()
        await sub.unsubscribe()
        return [json.loads(m.data) for m in msgs]
    finally:
        await bus.js.delete_consumer(DEFAULT_NAMES.triggers_stream, name)
        await bus.js.purge_stream(DEFAULT_NAMES.triggers_stream, subject=subject)


async def test_app_on_postgres_builds_its_own_engine_and_bus(api_pg_url: str, nats_bus: Bus) -> None:
    runbook_id = f"t-api-int-{uuid.uuid4().hex[:10]}"
    app = create_app(Settings(database_url=api_pg_url, nats_url=NATS_URL, bootstrap_admin_key=ADMIN_KEY))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app), base_url="http://rb.test", headers=ADMIN
        ) as client,
    ):
        r = await client.get("/health/ready")
        assert (r.status_code, r.json()["checks"]) == (200, {"nats": "ok", "jetstream": "ok", "database": "ok"})
        r = await client.post(
            "/api/v1/runbooks", content=runbook_yaml(runbook_id), headers={"content-type": "application/yaml"}
        )
        assert r.status_code == 201, r.text
        # Four eyes: a second admin approves what the bootstrap admin authored.
        second = await client.post("/api/v1/keys", json={"name": "second-admin", "roles": ["admin"]})
        approver = {"Authorization": f"Bearer {second.json()['key']}"}
        approved = await client.post(f"/api/v1/runbooks/{runbook_id}/approve", headers=approver)
        assert approved.json()["status"] == "APPROVED"
        # Concurrent first uses of one key race on the PostgreSQL primary key: one execution.
        key = f"int-{uuid.uuid4().hex}"
        answers = await asyncio.gather(
            *(
                client.post(
                    f"/api/v1/runbooks/{runbook_id}/execute", json={}, headers={"Idempotency-Key": key}
                )
                for _ in range(8)
            )
        )
        assert {a.status_code for a in answers} == {202}
        ids = {a.json()["execution_id"] for a in answers}
        assert len(ids) == 1
        triggers = await pending_triggers(nats_bus, runbook_id)
        assert [t["execution_id"] for t in triggers] == list(ids)
        assert triggers[0]["data"]["params"] == {"n": 5}
        listed = (await client.get("/api/v1/runbooks", params={"status": "APPROVED"})).json()
        assert runbook_id in [i["id"] for i in listed["items"]]
        assert (await client.get("/api/v1/executions/unknown0001")).status_code == 404


async def test_ready_is_503_when_postgres_goes_away(postgres_url: str, scratch_pg_url: str) -> None:
    from rb_api.app import create_app as make

    app = make(Settings(database_url=scratch_pg_url, nats_url=NATS_URL, bootstrap_admin_key=ADMIN_KEY))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app), base_url="http://rb.test", headers=ADMIN
        ) as client,
    ):
        assert (await client.get("/health/ready")).status_code == 200
        import psycopg
        from sqlalchemy.engine import make_url

        admin = make_url(postgres_url).set(database="postgres").render_as_string(hide_password=False)
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{make_url(scratch_pg_url).database}" WITH (FORCE)')
        r = await client.get("/health/ready")
        assert r.status_code == 503
        assert r.headers["content-type"].startswith("application/problem+json")
        body = r.json()
        assert [e["check"] for e in body["errors"]] == ["database"]
        assert body["checks"]["nats"] == "ok"
        # Requests that need the database are 503 problems, never a 500.
        r = await client.get("/api/v1/runbooks")
        assert r.status_code == 503
        assert r.json()["type"] == "urn:rb:problem:database-unavailable"


async def _events(runbook_id: str) -> list[Event]:
    runbook = load_runbook_text(runbook_yaml(runbook_id))[0]
    store = InMemoryEventStore()
    runner = Runner(
        store, PluginExecutor(default_registry()), FakeClock(datetime(2025, 11, 29, tzinfo=UTC)), Settings()
    )
    execution_id = uuid.uuid4().hex
    await runner.run(RunRequest(runbook=runbook, params={"n": 3}, actor="it", execution_id=execution_id))
    return store.read(execution_id)


async def test_service_streams_sse_live_over_tcp(api_pg_url: str, nats_bus: Bus) -> None:
    port = free_port()
    settings = Settings(
        database_url=api_pg_url,
        nats_url=NATS_URL,
        api_addr=f"127.0.0.1:{port}",
        bootstrap_admin_key=ADMIN_KEY,
    )
    stop = asyncio.Event()
    service = asyncio.create_task(serve_api(settings, stop, log_level="warning"))
    events = await _events(f"t-api-sse-{uuid.uuid4().hex[:8]}")
    execution_id = events[0].execution_id
    terminal = next(i for i, e in enumerate(events) if e.type in TERMINAL_EVENTS)
    last_seq = 0

    async def publish(batch: list[Event]) -> None:
        nonlocal last_seq
        for event in batch:
            last_seq = await append_event(nats_bus, event, last_seq)

    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", timeout=10, headers=ADMIN
        ) as client:
            for _ in range(100):
                try:
                    if (await client.get("/health/live")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
            await publish(events[:2])
            seen: list[dict[str, Any]] = []
            async with client.stream("GET", f"/api/v1/executions/{execution_id}/stream") as response:
                assert response.status_code == 200
                assert response.headers["content-type"].startswith("text/event-stream")
                frame: dict[str, str] = {}
                async for line in response.aiter_lines():
                    if line.startswith(("id:", "event:", "data:")):
                        name, _, value = line.partition(":")
                        frame[name] = value.strip()
                    elif line == "" and "data" in frame:
                        seen.append(frame)
                        frame = {}
                        if len(seen) == 2:
                            # The first events arrived while the execution is still going on.
                            await publish(events[2 : terminal + 1])
            assert [int(f["id"]) for f in seen] == [e.seq for e in events[: terminal + 1]]
            assert seen[-1]["event"] == events[terminal].type.value
            metrics = (await client.get("/metrics")).text
            assert 'route="/api/v1/executions/{execution_id}/stream",status="200"' in metrics
    finally:
        stop.set()
        await asyncio.wait_for(service, 15)
        await nats_bus.js.purge_stream(
            DEFAULT_NAMES.events_stream, subject=DEFAULT_NAMES.exec_subject(execution_id)
        )
    with pytest.raises(httpx.TransportError):
        async with httpx.AsyncClient() as client:
            await client.get(f"http://127.0.0.1:{port}/health/live")
