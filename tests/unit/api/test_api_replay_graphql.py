"""Replay, audit and GraphQL over executions recorded by the real recorder into the API's database."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import httpx
from api_auth_support import approve
from sqlalchemy import Engine

from rb_common.loader import load_runbook_text
from rb_common.ports import InMemoryEventStore
from rb_common.settings import Settings
from rb_engine.clock import SystemClock
from rb_engine.runner import PluginExecutor, Runner, RunRequest
from rb_engine.steps.registry import default_registry
from rb_store.recorder import Recorder

RUNBOOK = """id: {rid}
name: Replayed
steps:
  - {{id: a, type: transform, inputs: {{n: 2}}, outputs: {{n: $.n}}}}
  - {{id: b, type: transform, depends_on: [a], inputs: {{n: "${{steps.a.outputs.n * 3}}"}}, outputs: {{n: $.n}}}}
"""


def record(engine: Engine, rid: str) -> str:
    runbook, _ = load_runbook_text(RUNBOOK.format(rid=rid))
    store = InMemoryEventStore()
    state = asyncio.run(
        Runner(store, PluginExecutor(default_registry()), SystemClock(), Settings()).run(
            RunRequest(runbook=runbook)
        )
    )
    recorder = Recorder(engine)
    for event in store.read(state.execution_id):
        recorder.apply(event)
    return state.execution_id


async def test_replay_and_audit_endpoints(client: httpx.AsyncClient, engine: Engine) -> None:
    rid = f"t-replay-{uuid.uuid4().hex[:8]}"
    execution_id = await asyncio.to_thread(record, engine, rid)
    report = (await client.post(f"/api/v1/executions/{execution_id}/replay")).json()
    assert report["verified"] is True and report["source"] == "database"
    assert report["result"]["steps"]["b"]["outputs"] == {"n": 6}
    changed = load_runbook_text(
        RUNBOOK.format(rid=rid).replace("steps.a.outputs.n * 3", "steps.a.outputs.n * 4")
    )[0]
    what_if = (
        await client.post(f"/api/v1/executions/{execution_id}/replay", json={"against": changed.snapshot()})
    ).json()
    assert what_if["verified"] is False
    assert what_if["deviations"][0]["step"] == "b"
    audit = (await client.get(f"/api/v1/executions/{execution_id}/audit")).json()
    assert audit["intact"] is True and audit["problems"] == [] and audit["actor"] == "cli"


async def test_audit_names_an_edited_event_in_the_database(client: httpx.AsyncClient, engine: Engine) -> None:
    from sqlalchemy import text

    execution_id = await asyncio.to_thread(record, engine, f"t-audit-{uuid.uuid4().hex[:8]}")
    with engine.begin() as conn:
        row = conn.execute(
            text("SELECT event FROM events WHERE execution_id = :e AND seq = 4"), {"e": execution_id}
        ).one()
        import json

        event = json.loads(row.event) if isinstance(row.event, str) else dict(row.event)
        event["actor"] = "mallory"
        conn.execute(
            text("UPDATE events SET event = :v WHERE execution_id = :e AND seq = 4"),
            {"v": json.dumps(event), "e": execution_id},
        )
    audit = (await client.get(f"/api/v1/executions/{execution_id}/audit")).json()
    assert audit["intact"] is False
    assert audit["problems"][0]["seq"] == 4 and "edited" in audit["problems"][0]["problem"]


async def test_unknown_execution_is_a_404_problem(client: httpx.AsyncClient) -> None:
    for method, path in (("POST", "replay"), ("GET", "audit")):
        response = await client.request(method, f"/api/v1/executions/{uuid.uuid4().hex}/{path}")
        assert response.status_code == 404
        assert response.headers["content-type"].startswith("application/problem+json")


async def test_graphql_queries_and_mutations(
    client: httpx.AsyncClient, engine: Engine, tmp_path: Path, runbook_id: str
) -> None:
    created = await client.post(
        "/api/v1/runbooks",
        content=RUNBOOK.format(rid=runbook_id),
        headers={"Content-Type": "application/yaml"},
    )
    assert created.status_code == 201
    query = '{ runbook(id: "%s") { id name status revision } }' % runbook_id
    data = (await client.post("/graphql", json={"query": query})).json()["data"]
    assert data["runbook"] == {"id": runbook_id, "name": "Replayed", "status": "DRAFT", "revision": 1}
    mutation = 'mutation { executeRunbook(id: "%s", params: {}) { executionId status } }' % runbook_id
    refused = (await client.post("/graphql", json={"query": mutation})).json()
    assert refused["data"] is None and "only APPROVED revisions execute" in refused["errors"][0]["message"]
    await approve(client, runbook_id)
    mutation = 'mutation { executeRunbook(id: "%s", params: {}) { executionId status } }' % runbook_id
    ticket = (await client.post("/graphql", json={"query": mutation})).json()["data"]["executeRunbook"]
    assert ticket["status"] == "QUEUED" and len(ticket["executionId"]) == 32
    execution_id = await asyncio.to_thread(record, engine, f"t-gql-{uuid.uuid4().hex[:8]}")
    query = '{ runbookExecution(id: "%s") { status steps { id status outputs } } }' % execution_id
    execution = (await client.post("/graphql", json={"query": query})).json()["data"]["runbookExecution"]
    assert execution["status"] == "SUCCEEDED" and execution["steps"][1]["outputs"] == {"n": 6}
    replay = 'mutation { replayExecution(id: "%s") { verified deviations { step } } }' % execution_id
    assert (await client.post("/graphql", json={"query": replay})).json()["data"]["replayExecution"] == {
        "verified": True,
        "deviations": [],
    }
    missing = (await client.post("/graphql", json={"query": '{ runbook(id: "nope-x") { id } }'})).json()
    assert missing["data"]["runbook"] is None
