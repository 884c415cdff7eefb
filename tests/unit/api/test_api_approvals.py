"""/api/v1/approvals: list and read approval steps; approve / reject with four eyes (not the
execution's requester, not the revision's author, only listed approvers), comments when
required, one decision per person; the decision reaches the executor as approval.decided."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from api_auth_support import ADMIN, bearer
from api_probe_support import KeyFactory, SubjectProbe
from approval_support import Waiting, approval_yaml
from sqlalchemy import Engine

from rb_engine.coordinator.applier import controlled

YAML = {"content-type": "application/yaml"}


@pytest.fixture
async def waiting(
    client: httpx.AsyncClient, engine: Engine, runbook_id: str, make_key: KeyFactory
) -> Waiting:
    created = await client.post("/api/v1/runbooks", content=approval_yaml(runbook_id), headers=YAML)
    assert created.status_code == 201, created.text  # authored by key:admin
    return Waiting(engine, approval_yaml(runbook_id), requester="key:alice")


async def keys(make_key: KeyFactory) -> dict[str, dict[str, str]]:
    return {name: bearer(await make_key(name, "approver")) for name in ("alice", "bob", "carol")}


async def test_pending_approvals_are_listed_and_read(client: httpx.AsyncClient, waiting: Waiting) -> None:
    listed = await client.get("/api/v1/approvals", params={"status": "pending"})
    assert listed.status_code == 200, listed.text
    [item] = [i for i in listed.json()["items"] if i["id"] == waiting.approval_id]
    assert item["execution_id"] == waiting.execution_id and item["step_id"] == "gate"
    assert item["approvers"] == ["alice", "bob"] and item["prompt"] == "Go?"
    assert item["requested_by"] == "key:alice" and item["require_comment"] is True
    one = await client.get(f"/api/v1/approvals/{waiting.approval_id}")
    assert one.status_code == 200 and one.json() == item
    assert (await client.get("/api/v1/approvals/nope:gate")).status_code == 404
    bad = await client.get("/api/v1/approvals", params={"status": "maybe"})
    assert bad.status_code == 422 and bad.headers["content-type"].startswith("application/problem+json")


async def test_four_eyes_and_the_approvers_list(
    client: httpx.AsyncClient, waiting: Waiting, make_key: KeyFactory, probe: SubjectProbe
) -> None:
    who = await keys(make_key)
    url = f"/api/v1/approvals/{waiting.approval_id}/approve"
    requester = await client.post(url, json={"comment": "mine"}, headers=who["alice"])
    assert requester.status_code == 403 and "requested this execution" in requester.json()["detail"]
    author = await client.post(url, json={"comment": "I wrote it"}, headers=ADMIN)
    assert author.status_code == 403, author.text  # admin is an approver by role, but not listed
    stranger = await client.post(url, json={"comment": "sure"}, headers=who["carol"])
    assert stranger.status_code == 403 and "not one of the approvers" in stranger.json()["detail"]
    viewer = await client.post(
        url, json={"comment": "sure"}, headers=bearer(await make_key("dave", "viewer"))
    )
    assert viewer.status_code == 403
    silent = await client.post(url, json={}, headers=who["bob"])
    assert silent.status_code == 422 and silent.json()["errors"][0]["field"] == "body.comment"
    ok = await client.post(url, json={"comment": "ship it"}, headers=who["bob"])
    assert ok.status_code == 202, ok.text
    assert ok.json() == {
        "approval_id": waiting.approval_id,
        "execution_id": waiting.execution_id,
        "decision": "approve",
        "actor": "key:bob",
        "status": "ACCEPTED",
        "settles": True,
    }
    [command], _ = await probe.commands(waiting.execution_id)
    assert command["type"] == "approval.decided" and command["actor"] == "key:bob"
    assert command["data"] == {
        "step_id": "gate",
        "approval_id": waiting.approval_id,
        "decision": "approve",
        "actor": "key:bob",
        "comment": "ship it",
        "via": "api",
    }
    # The executor takes it in: the step succeeds, the approval is approved, later decisions 409.
    waiting.record(controlled(waiting.state, command["type"], command["data"], command["actor"]))
    assert waiting.state.steps["gate"].status == "SUCCEEDED"
    done = (await client.get(f"/api/v1/approvals/{waiting.approval_id}")).json()
    assert done["status"] == "approved" and [d["actor"] for d in done["decisions"]] == ["key:bob"]
    late = await client.post(
        f"/api/v1/approvals/{waiting.approval_id}/reject", json={"comment": "no"}, headers=who["bob"]
    )
    assert late.status_code == 409


async def test_the_author_of_the_revision_may_not_decide(
    client: httpx.AsyncClient, engine: Engine, runbook_id: str, make_key: KeyFactory
) -> None:
    author_key = await make_key("erin", "author", "approver")
    text = approval_yaml(runbook_id, approvers="['role:approver']")
    created = await client.post("/api/v1/runbooks", content=text, headers={**YAML, **bearer(author_key)})
    assert created.status_code == 201, created.text
    waiting = Waiting(engine, text, requester="key:someone")
    url = f"/api/v1/approvals/{waiting.approval_id}/reject"
    refused = await client.post(url, json={"comment": "mine"}, headers=bearer(author_key))
    assert refused.status_code == 403 and "authored the runbook revision" in refused.json()["detail"]
    other = await client.post(
        url, json={"comment": "not today"}, headers=bearer(await make_key("frank", "approver"))
    )
    assert other.status_code == 202, other.text


async def test_unknown_approvals_and_bad_bodies_are_4xx(client: httpx.AsyncClient, waiting: Waiting) -> None:
    r = await client.post("/api/v1/approvals/nope:gate/approve", json={"comment": "x"})
    assert r.status_code == 404
    extra: Any = {"comment": "x", "decision": "approve"}
    r = await client.post(f"/api/v1/approvals/{waiting.approval_id}/approve", json=extra)
    assert r.status_code == 422
    r = await client.post(f"/api/v1/approvals/{waiting.approval_id}/approve", json={"comment": 5})
    assert r.status_code == 422
