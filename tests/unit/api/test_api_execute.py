"""POST /runbooks/{id}/execute: validated params, the trigger really reaches NATS, idempotency."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import httpx
from api_auth_support import approve, bearer
from sqlalchemy import Engine, event

from rb_common.loader import load_runbook_text

YAML = {"content-type": "application/yaml"}
PROBLEM = "application/problem+json"


async def register(client: httpx.AsyncClient, text: str) -> None:
    """Registered by the default admin and approved by a second one: only APPROVED runs."""
    r = await client.post("/api/v1/runbooks", content=text, headers=YAML)
    assert r.status_code == 201, r.text
    await approve(client, r.json()["id"])


async def test_execute_publishes_the_trigger(
    make_key: Any, client: httpx.AsyncClient, runbook_id: str, make_yaml: Callable[..., str], probe: Any
) -> None:
    text = make_yaml(runbook_id)
    await register(client, text)
    r = await client.post(
        f"/api/v1/runbooks/{runbook_id}/execute",
        json={"params": {"region": "eu"}, "assumptions": {"source_ok": True}},
        headers=bearer(await make_key("alice", "operator")),
    )
    assert r.status_code == 202, r.text
    body = r.json()
    assert set(body) == {"execution_id", "status"}
    assert body["status"] == "QUEUED"
    execution_id = body["execution_id"]
    assert r.headers["location"] == f"/api/v1/executions/{execution_id}"

    triggers, pending = await probe.triggers(runbook_id)
    assert pending == 1
    [trigger] = triggers
    assert trigger["headers"]["Nats-Msg-Id"] == execution_id
    msg = trigger["body"]
    assert (msg["execution_id"], msg["actor"]) == (execution_id, "key:alice")
    data = msg["data"]
    assert data["params"] == {"region": "eu", "batch_size": 200}  # the schema default is applied
    assert data["runbook"] == load_runbook_text(text)[0].snapshot()
    assert data["trigger"] == {"type": "api", "actor": "key:alice", "revision": 1}
    assert data["actor"] == "key:alice"
    assert data["legal_basis"] == "Tests of the rb API"  # the runbook's, when the body has none
    assert data["facts"] == {"source_ok": True}
    assert (data["env"], data["files"], data["concurrency"]) == ({}, {}, None)
    assert set(data) == {
        "runbook",
        "params",
        "env",
        "trigger",
        "facts",
        "actor",
        "legal_basis",
        "concurrency",
        "files",
        "waits",  # `timers`: wait steps are the coordinator's timers
        "wind_down",  # `together`: a wind-down skips the pending steps in one steps.skipped
    }
    assert (data["waits"], data["wind_down"]) == ("timers", "together")


async def test_execute_uses_the_current_revision_and_given_legal_basis(
    client: httpx.AsyncClient, runbook_id: str, make_yaml: Callable[..., str], probe: Any
) -> None:
    await register(client, make_yaml(runbook_id))
    v2 = make_yaml(runbook_id).replace("version: 1.0.0", "version: 2.0.0")
    await client.put(f"/api/v1/runbooks/{runbook_id}", content=v2, headers=YAML)
    await approve(client, runbook_id)
    r = await client.post(
        f"/api/v1/runbooks/{runbook_id}/execute",
        json={"params": {"region": "us", "batch_size": 7}, "legal_basis": "Incident 42"},
    )
    assert r.status_code == 202
    [trigger], _ = await probe.triggers(runbook_id)
    data = trigger["body"]["data"]
    assert data["runbook"]["version"] == "2.0.0"
    assert data["trigger"]["revision"] == 2
    assert (data["legal_basis"], data["actor"], data["params"]) == (
        "Incident 42",
        "key:admin",
        {"region": "us", "batch_size": 7},
    )


async def test_bad_params_name_the_fields(
    client: httpx.AsyncClient, runbook_id: str, make_yaml: Callable[..., str], probe: Any
) -> None:
    await register(client, make_yaml(runbook_id))
    r = await client.post(
        f"/api/v1/runbooks/{runbook_id}/execute", json={"params": {"region": "mars", "batch_size": 99999}}
    )
    assert r.status_code == 422
    assert r.headers["content-type"].startswith(PROBLEM)
    fields = {e["field"]: e["message"] for e in r.json()["errors"]}
    assert set(fields) == {"region", "batch_size"}
    assert "mars" in fields["region"]
    r = await client.post(f"/api/v1/runbooks/{runbook_id}/execute", json={})
    assert r.status_code == 422
    assert "region" in r.json()["detail"]
    assert await probe.count("RB_TRIGGERS", f"rb.trigger.{runbook_id}") == 0


async def test_bad_execute_bodies(
    client: httpx.AsyncClient, runbook_id: str, make_yaml: Callable[..., str]
) -> None:
    await register(client, make_yaml(runbook_id))
    url = f"/api/v1/runbooks/{runbook_id}/execute"
    cases: list[tuple[dict[str, Any], int]] = [
        ({"json": {"params": [1, 2]}}, 422),
        ({"json": {"parameters": {}}}, 422),  # unknown key
        ({"json": [1]}, 422),
        ({"content": b"{nope", "headers": {"content-type": "application/json"}}, 400),
        ({"json": {"params": {"region": "eu"}}, "headers": {"Idempotency-Key": "x" * 201}}, 422),
        ({"json": {"params": {"region": "eu"}}, "headers": {"Idempotency-Key": "   "}}, 400),
    ]
    for kwargs, status in cases:
        r = await client.post(url, **kwargs)
        assert r.status_code == status, (kwargs, r.text)
        assert r.headers["content-type"].startswith(PROBLEM)


async def test_idempotency_key_gives_one_execution(
    client: httpx.AsyncClient, runbook_id: str, make_yaml: Callable[..., str], probe: Any
) -> None:
    await register(client, make_yaml(runbook_id))
    key = f"key-{uuid.uuid4().hex}"
    url = f"/api/v1/runbooks/{runbook_id}/execute"
    body = {"params": {"region": "eu"}}
    first = await client.post(url, json=body, headers={"Idempotency-Key": key})
    second = await client.post(url, json=body, headers={"Idempotency-Key": key})
    assert (first.status_code, second.status_code) == (202, 202)
    assert first.json() == second.json()
    assert first.headers["location"] == second.headers["location"]
    # Concurrent first uses of another key also agree on one execution.
    other = f"key-{uuid.uuid4().hex}"
    racing = await asyncio.gather(
        *(client.post(url, json=body, headers={"Idempotency-Key": other}) for _ in range(5))
    )
    assert {r.status_code for r in racing} == {202}
    assert len({r.json()["execution_id"] for r in racing}) == 1

    triggers, pending = await probe.triggers(runbook_id, want=2)
    assert pending == 2  # one message per key, not per request
    ids = sorted(t["body"]["execution_id"] for t in triggers)
    assert ids == sorted([first.json()["execution_id"], racing[0].json()["execution_id"]])
    assert {t["body"]["data"]["trigger"]["idempotency_key"] for t in triggers} == {key, other}

    # Without a key, every call is a new execution.
    a = await client.post(url, json=body)
    b = await client.post(url, json=body)
    assert a.json()["execution_id"] != b.json()["execution_id"]


async def test_idempotency_key_reused_for_another_runbook(
    client: httpx.AsyncClient, runbook_id: str, make_yaml: Callable[..., str], bus: Any
) -> None:
    other = runbook_id + "-b"
    await register(client, make_yaml(runbook_id))
    await register(client, make_yaml(other))
    key = f"key-{uuid.uuid4().hex}"
    body = {"params": {"region": "eu"}}
    try:
        r = await client.post(
            f"/api/v1/runbooks/{runbook_id}/execute", json=body, headers={"Idempotency-Key": key}
        )
        assert r.status_code == 202
        r = await client.post(
            f"/api/v1/runbooks/{other}/execute", json=body, headers={"Idempotency-Key": key}
        )
        assert r.status_code == 422
        assert r.json()["type"].endswith("idempotency-key-reused")
    finally:
        await bus.js.purge_stream("RB_TRIGGERS", subject=f"rb.trigger.{other}")


async def test_rejected_request_does_not_claim_the_key(
    client: httpx.AsyncClient, runbook_id: str, make_yaml: Callable[..., str], probe: Any
) -> None:
    await register(client, make_yaml(runbook_id))
    key = f"key-{uuid.uuid4().hex}"
    url = f"/api/v1/runbooks/{runbook_id}/execute"
    r = await client.post(url, json={"params": {"region": "mars"}}, headers={"Idempotency-Key": key})
    assert r.status_code == 422
    r = await client.post(url, json={"params": {"region": "eu"}}, headers={"Idempotency-Key": key})
    assert r.status_code == 202
    [trigger], _ = await probe.triggers(runbook_id)
    assert trigger["body"]["execution_id"] == r.json()["execution_id"]
    assert trigger["body"]["data"]["params"]["region"] == "eu"


async def test_every_execute_runs_the_revision_current_then(
    client: httpx.AsyncClient, runbook_id: str, make_yaml: Callable[..., str], probe: Any
) -> None:
    """Parsed revisions are cached (rb_api.revisions): a new revision, a deprecation, and a runbook
    deleted and registered again (its revision numbers start over) all count at the next execute."""
    execute = f"/api/v1/runbooks/{runbook_id}/execute"
    run = {"params": {"region": "eu"}}
    await register(client, make_yaml(runbook_id))
    assert (await client.post(execute, json=run)).status_code == 202
    assert (await client.post(execute, json=run)).status_code == 202  # from the cache
    v2 = make_yaml(runbook_id).replace("version: 1.0.0", "version: 2.0.0")
    assert (await client.put(f"/api/v1/runbooks/{runbook_id}", content=v2, headers=YAML)).status_code == 200
    assert (await client.post(execute, json=run)).status_code == 409  # revision 2 is a DRAFT
    await approve(client, runbook_id)
    assert (await client.post(execute, json=run)).status_code == 202
    assert (await client.delete(f"/api/v1/runbooks/{runbook_id}")).status_code == 204
    assert (await client.post(execute, json=run)).status_code == 404
    await register(client, make_yaml(runbook_id).replace("version: 1.0.0", "version: 3.0.0"))
    assert (await client.post(execute, json=run)).status_code == 202
    assert (await client.post(f"/api/v1/runbooks/{runbook_id}/deprecate")).status_code == 200
    assert (await client.post(execute, json=run)).status_code == 409

    triggers, _ = await probe.triggers(runbook_id, want=4)
    ran = [(t["body"]["data"]["runbook"]["version"], t["body"]["data"]["trigger"]["revision"]) for t in triggers]
    assert ran == [("1.0.0", 1), ("1.0.0", 1), ("2.0.0", 2), ("3.0.0", 1)]


async def test_a_burst_of_executes_parses_the_revision_once(
    client: httpx.AsyncClient, engine: Engine, runbook_id: str, make_yaml: Callable[..., str], probe: Any
) -> None:
    """Executes arriving together before the revision is cached (right after an approval, or the
    API's start) share one read and parse of its definition instead of one each."""
    await register(client, make_yaml(runbook_id))
    reads: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "runbook_versions.definition" in statement:
            reads.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        execute = f"/api/v1/runbooks/{runbook_id}/execute"
        answers = await asyncio.gather(*(client.post(execute, json={"params": {"region": "eu"}}) for _ in range(20)))
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert [a.status_code for a in answers] == [202] * 20
    assert len(reads) == 1, reads
    triggers, _ = await probe.triggers(runbook_id, want=20)
    assert len(triggers) == 20
