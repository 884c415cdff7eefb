"""Only APPROVED revisions execute (REST and GraphQL); four eyes on approvals, recorded; the
installer exception of rb up's system identity. The scheduler's doors and the executor's own
check are in tests/unit/scheduler and tests/unit/executor."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
from api_auth_support import bearer

from rb_common.bus import DEFAULT_NAMES

YAML = {"content-type": "application/yaml"}


async def refused_everywhere(client: httpx.AsyncClient, runbook_id: str, probe: Any, status: str) -> None:
    r = await client.post(f"/api/v1/runbooks/{runbook_id}/execute", json={"params": {"region": "eu"}})
    assert r.status_code == 409, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert status in r.json()["detail"]
    mutation = 'mutation { executeRunbook(id: "%s", params: {region: "eu"}) { executionId } }' % runbook_id
    answer = (await client.post("/graphql", json={"query": mutation})).json()
    assert answer["data"] is None and answer["errors"][0]["message"].startswith("409"), answer
    assert await probe.count(DEFAULT_NAMES.triggers_stream, DEFAULT_NAMES.trigger_subject(runbook_id)) == 0


async def test_draft_and_deprecated_runbooks_do_not_execute(
    client: httpx.AsyncClient, runbook_id: str, make_yaml: Callable[..., str], probe: Any, approver: Any
) -> None:
    assert (
        await client.post("/api/v1/runbooks", content=make_yaml(runbook_id), headers=YAML)
    ).status_code == 201
    await refused_everywhere(client, runbook_id, probe, "DRAFT")
    assert (await client.post(f"/api/v1/runbooks/{runbook_id}/approve", headers=approver)).status_code == 200
    # A revision is a new DRAFT: nothing runs until it is approved in turn.
    revised = make_yaml(runbook_id).replace("version: 1.0.0", "version: 1.1.0")
    r = await client.put(f"/api/v1/runbooks/{runbook_id}", content=revised, headers=YAML)
    assert (r.json()["revision"], r.json()["status"]) == (2, "DRAFT")
    await refused_everywhere(client, runbook_id, probe, "DRAFT")
    assert (
        await client.post(f"/api/v1/runbooks/{runbook_id}/deprecate", headers=approver)
    ).status_code == 200
    await refused_everywhere(client, runbook_id, probe, "DEPRECATED")


async def test_four_eyes_refuses_the_author_and_records_both(
    client: httpx.AsyncClient, runbook_id: str, make_yaml: Callable[..., str], make_key: Any
) -> None:
    author_admin = bearer(await make_key("alice", "admin"))
    other_admin = bearer(await make_key("bob", "admin"))
    created = await client.post(
        "/api/v1/runbooks", content=make_yaml(runbook_id), headers={**YAML, **author_admin}
    )
    assert created.status_code == 201
    refused = await client.post(f"/api/v1/runbooks/{runbook_id}/approve", headers=author_admin)
    assert refused.status_code == 403
    problem = refused.json()
    assert problem["type"] == "urn:rb:problem:four-eyes" and "key:alice" in problem["detail"]
    assert (await client.get(f"/api/v1/runbooks/{runbook_id}")).json()["status"] == "DRAFT"
    approved = await client.post(f"/api/v1/runbooks/{runbook_id}/approve", headers=other_admin)
    assert approved.status_code == 200, approved.text
    assert (approved.json()["approved_by"], approved.json()["author"]) == ("key:bob", "key:alice")
    decisions = (await client.get(f"/api/v1/runbooks/{runbook_id}/versions")).json()["decisions"]
    assert [(d["action"], d["actor"], d["author"], d["revision"]) for d in decisions] == [
        ("approval_refused", "key:alice", "key:alice", 1),
        ("approved", "key:bob", "key:alice", 1),
    ]


async def test_only_the_system_identity_approves_what_it_registered(
    client: httpx.AsyncClient, runbook_id: str, make_yaml: Callable[..., str], make_key: Any
) -> None:
    """rb up's installer exception: `key:system` approves the bundled runbooks it registered,
    recorded with the reason; any other author-approver is refused."""
    system = bearer(await make_key("system", "author", "admin"))
    r = await client.post("/api/v1/runbooks", content=make_yaml(runbook_id), headers={**YAML, **system})
    assert r.status_code == 201
    approved = await client.post(f"/api/v1/runbooks/{runbook_id}/approve", headers=system)
    assert approved.status_code == 200, approved.text
    assert approved.json()["reason"] == "bundled with rb up"
    [decision] = (await client.get(f"/api/v1/runbooks/{runbook_id}/versions")).json()["decisions"]
    assert (decision["actor"], decision["author"], decision["reason"]) == (
        "key:system",
        "key:system",
        "bundled with rb up",
    )
    # The default admin authored this one: the system key is just another admin here.
    other = runbook_id + "-b"
    assert (await client.post("/api/v1/runbooks", content=make_yaml(other), headers=YAML)).status_code == 201
    assert (await client.post(f"/api/v1/runbooks/{other}/approve", headers=system)).json()["approved_by"] == (
        "key:system"
    )
