"""Executions over HTTP: the recorder's projection, the JetStream fallback, events, logs, SSE and
control commands. Executions are real runs of the in-process runner; the projection is written by
the recorder's own Recorder into the test's SQLite database."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
from api_auth_support import bearer
from sqlalchemy import Engine

from rb_common.events import Event
from rb_store.recorder import Recorder

PROBLEM = "application/problem+json"
DETAIL_KEYS = {
    "id",
    "runbook_id",
    "runbook_version",
    "status",
    "started_at",
    "completed_at",
    "trigger",
    "steps",
    "kpis",
    "parent",  # sub-runbooks: who started this run (None for a top-level one)
    "children",  # and the runs its `runbook` steps started
}
STEP_KEYS = {"id", "status", "attempts", "deliveries", "started_at", "completed_at", "outputs", "error"}


def project(engine: Engine, events: list[Event]) -> None:
    recorder = Recorder(engine)
    for event in events:
        recorder.apply(event)


def parse_sse(text: str) -> list[dict[str, Any]]:
    frames = []
    for block in text.split("\n\n"):
        fields: dict[str, Any] = {}
        for line in block.splitlines():
            if line.startswith(":") or ":" not in line:
                continue
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
        if "data" in fields:
            fields["data"] = json.loads(fields["data"])
            frames.append(fields)
    return frames


async def test_detail_from_the_projection(client: httpx.AsyncClient, engine: Engine, executions: Any) -> None:
    events = await executions.run()
    execution_id = events[0].execution_id
    project(engine, events)
    r = await client.get(f"/api/v1/executions/{execution_id}")
    assert r.status_code == 200, r.text
    detail = r.json()
    assert set(detail) == DETAIL_KEYS
    assert (detail["id"], detail["status"], detail["runbook_version"]) == (execution_id, "SUCCEEDED", "1.0.0")
    assert detail["runbook_id"].startswith("t-api-run-")
    assert detail["trigger"] == {"type": "api", "actor": "tester"}
    assert [s["id"] for s in detail["steps"]] == ["first", "second"]
    assert all(set(s) == STEP_KEYS for s in detail["steps"])
    assert detail["steps"][0]["outputs"] == {"size": 21}
    assert [(s["status"], s["attempts"], s["error"]) for s in detail["steps"]] == [("SUCCEEDED", 1, None)] * 2
    assert detail["started_at"] and detail["completed_at"]
    assert detail["kpis"] is not None
    assert detail["parent"] is None and detail["children"] == []


async def test_detail_falls_back_to_the_subject(
    client: httpx.AsyncClient, engine: Engine, executions: Any
) -> None:
    events = await executions.run()
    execution_id = events[0].execution_id
    await executions.publish(events)
    from_bus = (await client.get(f"/api/v1/executions/{execution_id}")).json()
    assert set(from_bus) == DETAIL_KEYS
    assert from_bus["status"] == "SUCCEEDED"
    # Once the recorder has projected it, the answer is the same.
    project(engine, events)
    from_tables = (await client.get(f"/api/v1/executions/{execution_id}")).json()
    assert from_tables == from_bus


async def test_in_flight_execution_from_the_subject(client: httpx.AsyncClient, executions: Any) -> None:
    events = await executions.run()
    started = next(i for i, e in enumerate(events) if e.type == "step.started")
    await executions.publish(events[: started + 1])
    detail = (await client.get(f"/api/v1/executions/{events[0].execution_id}")).json()
    assert detail["status"] == "RUNNING"
    assert detail["completed_at"] is None
    assert [s["status"] for s in detail["steps"]] == ["RUNNING", "PENDING"]


async def test_unknown_executions_are_404(client: httpx.AsyncClient) -> None:
    for path in [
        "/api/v1/executions/0000deadbeef",
        "/api/v1/executions/0000deadbeef/events",
        "/api/v1/executions/0000deadbeef/logs",
        "/api/v1/executions/0000deadbeef/stream",
        "/api/v1/executions/has.dots",
        "/api/v1/executions/star*/stream",
        "/api/v1/executions/%3E/events",
    ]:
        r = await client.get(path)
        assert r.status_code == 404, (path, r.text)
        assert r.headers["content-type"].startswith(PROBLEM)
    for action in ("cancel", "pause", "resume"):
        r = await client.post(f"/api/v1/executions/0000deadbeef/{action}")
        assert r.status_code == 404


async def test_list_filters_and_paging(client: httpx.AsyncClient, engine: Engine, executions: Any) -> None:
    runs = [
        await executions.run("t-api-list-a"),
        await executions.run("t-api-list-a"),
        await executions.run("t-api-list-b"),
    ]
    for events in runs:
        project(engine, events)
    running = await executions.run("t-api-list-b")
    project(engine, running[:1])  # requested only: QUEUED
    page = (await client.get("/api/v1/executions", params={"limit": 3})).json()
    assert (page["total"], page["limit"], page["offset"], len(page["items"])) == (4, 3, 0, 3)
    a = (await client.get("/api/v1/executions", params={"runbook_id": "t-api-list-a"})).json()
    assert sorted(i["id"] for i in a["items"]) == sorted(r[0].execution_id for r in runs[:2])
    queued = (await client.get("/api/v1/executions", params={"status": "queued"})).json()
    assert [i["id"] for i in queued["items"]] == [running[0].execution_id]
    assert (await client.get("/api/v1/executions", params={"status": "NOPE"})).status_code == 422
    assert (await client.get("/api/v1/executions", params={"limit": 501})).status_code == 422


async def test_events_and_logs(client: httpx.AsyncClient, engine: Engine, executions: Any) -> None:
    events = await executions.run()
    execution_id = events[0].execution_id
    await executions.publish(events)
    want = [e.model_dump(mode="json") for e in events]

    from_bus = (await client.get(f"/api/v1/executions/{execution_id}/events")).json()
    assert [e["seq"] for e in from_bus["items"]] == [e.seq for e in events]
    assert from_bus["items"][0]["type"] == "execution.requested"
    logs_bus = (await client.get(f"/api/v1/executions/{execution_id}/logs")).json()["items"]

    project(engine, events)
    from_db = (await client.get(f"/api/v1/executions/{execution_id}/events")).json()["items"]
    assert [Event.model_validate(e) for e in from_db] == [Event.model_validate(e) for e in want]
    after = (await client.get(f"/api/v1/executions/{execution_id}/events", params={"after_seq": 3})).json()
    assert [e["seq"] for e in after["items"]] == [e.seq for e in events if e.seq > 3]
    last = events[-1].seq
    assert (await client.get(f"/api/v1/executions/{execution_id}/events", params={"after_seq": last})).json()[
        "items"
    ] == []

    logs = (await client.get(f"/api/v1/executions/{execution_id}/logs")).json()["items"]
    assert [(s["step_id"], s["status"], s["outputs"]) for s in logs] == [
        ("first", "SUCCEEDED", {"size": 21}),
        ("second", "SUCCEEDED", {}),  # declares no outputs
    ]
    assert (logs[0]["inputs"], logs[1]["inputs"]) == ({"size": 21}, {"doubled": 42})
    assert [(s["step_id"], s["status"], s["outputs"]) for s in logs_bus] == [
        (s["step_id"], s["status"], s["outputs"]) for s in logs
    ]


async def test_sse_stream_live_until_terminal(client: httpx.AsyncClient, executions: Any) -> None:
    events = await executions.run()
    execution_id = events[0].execution_id
    await executions.publish(events[:2])

    async def the_rest() -> None:
        await asyncio.sleep(0.5)  # the stream is open and waiting by now
        await executions.publish(events[2:])

    publisher = asyncio.create_task(the_rest())
    r = await client.get(f"/api/v1/executions/{execution_id}/stream")
    await publisher
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    frames = parse_sse(r.text)
    assert [int(f["id"]) for f in frames] == [e.seq for e in events]
    assert [f["event"] for f in frames] == [e.type.value for e in events]
    assert frames[-1]["event"] == "execution.succeeded"
    assert Event.model_validate(frames[3]["data"]) == events[3]


async def test_sse_last_event_id_and_first_event_wait(client: httpx.AsyncClient, executions: Any) -> None:
    events = await executions.run()
    execution_id = events[0].execution_id

    async def later() -> None:
        await asyncio.sleep(0.3)  # the execution does not exist yet when the client connects
        await executions.publish(events)

    publisher = asyncio.create_task(later())
    r = await client.get(f"/api/v1/executions/{execution_id}/stream", headers={"Last-Event-ID": "4"})
    await publisher
    assert r.status_code == 200
    assert [int(f["id"]) for f in parse_sse(r.text)] == [e.seq for e in events if e.seq > 4]
    # A finished execution replays and closes; a Last-Event-ID past the end gives no events.
    r = await client.get(f"/api/v1/executions/{execution_id}/stream", headers={"Last-Event-ID": "999"})
    assert (r.status_code, parse_sse(r.text)) == (200, [])
    r = await client.get(f"/api/v1/executions/{execution_id}/stream", headers={"Last-Event-ID": "garbage"})
    assert len(parse_sse(r.text)) == len(events)


async def test_control_commands(
    make_key: Any, client: httpx.AsyncClient, engine: Engine, executions: Any, probe: Any
) -> None:
    events = await executions.run()
    execution_id = events[0].execution_id
    started = next(i for i, e in enumerate(events) if e.type == "step.started")
    await executions.publish(events[: started + 1])
    bob = bearer(await make_key("bob", "operator"))
    for action, kind in (("pause", "execution.paused"), ("resume", "execution.resumed")):
        r = await client.post(f"/api/v1/executions/{execution_id}/{action}", headers=bob)
        assert r.status_code == 202, r.text
        assert r.json()["command"] == kind
    r = await client.post(f"/api/v1/executions/{execution_id}/cancel", json={"reason": "wrong target"})
    assert r.status_code == 202
    assert r.headers["location"] == f"/api/v1/executions/{execution_id}"
    commands, pending = await probe.commands(execution_id, want=3)
    assert pending == 3
    assert [(c["type"], c["actor"]) for c in commands] == [
        ("execution.paused", "key:bob"),
        ("execution.resumed", "key:bob"),
        ("execution.cancel_requested", "key:admin"),
    ]
    assert commands[2]["data"]["reason"] == "wrong target"
    assert all(c["execution_id"] == execution_id for c in commands)
    assert (
        await client.post(f"/api/v1/executions/{execution_id}/cancel", json={"bogus": 1})
    ).status_code == 422

    finished = await executions.run()
    project(engine, finished)
    r = await client.post(f"/api/v1/executions/{finished[0].execution_id}/cancel")
    assert r.status_code == 409
    assert r.headers["content-type"].startswith(PROBLEM)
