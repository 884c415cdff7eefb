"""POST /api/v1/executions/{id}/steps/{step}/retry and POST /api/v1/events: what they publish
(on the in-memory JetStream twin) and what they refuse."""

from __future__ import annotations

import json
from typing import Any

import httpx

from rb_common.bus import DEFAULT_NAMES

EX = "/api/v1/executions"


async def test_retry_publishes_a_command_for_a_failed_step(
    client: httpx.AsyncClient, executions: Any, probe: Any
) -> None:
    failed = await executions.run(params={"region": "eu", "batch_size": None})
    await executions.publish(failed)
    execution_id = failed[0].execution_id
    r = await client.post(f"{EX}/{execution_id}/steps/second/retry", json={"reason": "fixed the input"})
    assert r.status_code == 202, r.text
    assert r.json() == {
        "execution_id": execution_id,
        "step_id": "second",
        "action": "retry",
        "status": "ACCEPTED",
    }
    again = await client.post(f"{EX}/{execution_id}/steps/second/retry")
    assert again.status_code == 202
    commands, count = await probe.commands(execution_id)
    assert count == 1, "a repeated request for the same failed attempt is a duplicate"
    assert commands[0]["type"] == "step.retry_requested"
    assert commands[0]["data"] == {"step_id": "second", "requested_via": "api", "reason": "fixed the input"}


async def test_retry_refuses_what_cannot_be_retried(client: httpx.AsyncClient, executions: Any) -> None:
    failed = await executions.run(params={"region": "eu", "batch_size": None})
    done = await executions.run()
    await executions.publish(failed)
    await executions.publish(done)
    fid, did = failed[0].execution_id, done[0].execution_id
    cases = [
        (f"{EX}/{fid}/steps/first/retry", 409, "did not fail"),
        (f"{EX}/{fid}/steps/nope/retry", 404, "has no step"),
        (f"{EX}/{did}/steps/second/retry", 409, "only a FAILED execution"),
        (f"{EX}/{'0' * 32}/steps/second/retry", 404, "does not exist"),
    ]
    for path, status, detail in cases:
        r = await client.post(path)
        assert r.status_code == status, (path, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert detail in r.json()["detail"], r.text


async def test_an_event_is_published_on_its_subject(client: httpx.AsyncClient, probe: Any) -> None:
    body = {"subject": "deploy.finished", "correlation": "CHG-7", "data": {"status": "ok"}, "id": "ev-1"}
    r = await client.post("/api/v1/events", json=body)
    assert r.status_code == 202, r.text
    assert r.json() == {"id": "ev-1", "subject": "deploy.finished", "status": "ACCEPTED"}
    assert (await client.post("/api/v1/events", json=body)).status_code == 202
    msgs, count = await probe.take(
        DEFAULT_NAMES.outside_stream, DEFAULT_NAMES.outside_event_subject("deploy.finished")
    )
    assert count == 1, "the sender's id makes a repeat a duplicate"
    assert json.loads(msgs[0].data) == body


async def test_bad_events_are_refused_with_problems(client: httpx.AsyncClient) -> None:
    for body, status in [
        ({"subject": "has space", "correlation": "x"}, 422),
        ({"subject": "a..b"}, 422),
        ({"subject": "ok", "extra": 1}, 422),
        ({"subject": "ok", "data": "x" * 70_000}, 413),
    ]:
        r = await client.post("/api/v1/events", json=body)
        assert r.status_code == status, (body, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
