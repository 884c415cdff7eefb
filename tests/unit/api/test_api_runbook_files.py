"""Runbooks registered with the files they reference: stored with the revision, carried by every
execution, refused when missing or too large."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from api_auth_support import approve

from rb_api.deps import ApiOptions
from rb_common.snapshot import MAX_SNAPSHOT_BYTES

YAML = {"content-type": "application/yaml"}
PROBLEM = "application/problem+json"
SCHEMA = '{"type": "object", "required": ["id"]}'

STEPS = (
    "  - id: check\n"
    "    type: schema_check\n"
    "    inputs: {entities: [{id: 1}], schema: schemas/entity.json}\n"
    "  - id: ask\n"
    "    type: api_call\n"
    "    depends_on: [check]\n"
    "    inputs: {endpoint: 'http://127.0.0.1:9/graphql', query: queries/q.graphql}\n"
    "  - id: inline\n"
    "    type: schema_check\n"
    "    depends_on: [check]\n"
    "    inputs: {entities: [], schema: {type: object}}\n"
)
FILES = {"schemas/entity.json": SCHEMA, "queries/q.graphql": "query { ok }\n"}


@pytest.fixture
def api_options() -> ApiOptions:
    """The production body limit (1 MiB), above the snapshot cap."""
    return ApiOptions(stream_wait_seconds=1.0, keepalive_seconds=0.3)


def bundle(text: str, files: dict[str, str]) -> dict[str, Any]:
    return {"runbook": text, "files": files}


async def test_files_sent_with_the_runbook_are_stored_and_every_execution_carries_them(
    client: httpx.AsyncClient, runbook_id: str, make_yaml: Callable[..., str], probe: Any
) -> None:
    text = make_yaml(runbook_id, steps=STEPS)
    r = await client.post("/api/v1/runbooks", json=bundle(text, {**FILES, "unused.txt": "x"}))
    assert r.status_code == 201, r.text
    assert [w["message"] for w in r.json()["warnings"]] == ["file 'unused.txt' was sent but no step reads it"]
    stored = (await client.get(f"/api/v1/runbooks/{runbook_id}")).json()
    assert stored["definition"]["files"] == FILES
    assert stored["source"] == text  # the YAML as written, not the envelope
    await approve(client, runbook_id)
    r = await client.post(f"/api/v1/runbooks/{runbook_id}/execute", json={"params": {"region": "eu"}})
    assert r.status_code == 202, r.text
    [trigger], _ = await probe.triggers(runbook_id)
    data = trigger["body"]["data"]
    assert data["files"] == FILES
    assert "files" not in data["runbook"]  # recorded once, as the event's files


async def test_changed_files_make_a_new_revision(
    client: httpx.AsyncClient, runbook_id: str, make_yaml: Callable[..., str]
) -> None:
    text = make_yaml(runbook_id, steps=STEPS)
    assert (await client.post("/api/v1/runbooks", json=bundle(text, FILES))).status_code == 201
    same = await client.put(f"/api/v1/runbooks/{runbook_id}", json=bundle(text, FILES))
    assert same.json()["revision"] == 1
    edited = {**FILES, "schemas/entity.json": '{"type": "object"}'}
    changed = await client.put(f"/api/v1/runbooks/{runbook_id}", json=bundle(text, edited))
    assert changed.status_code == 200, changed.text
    assert changed.json()["revision"] == 2
    old = (await client.get(f"/api/v1/runbooks/{runbook_id}/versions/1")).json()
    assert old["definition"]["files"]["schemas/entity.json"] == SCHEMA


async def test_a_referenced_file_that_was_not_sent_is_refused(
    client: httpx.AsyncClient, runbook_id: str, make_yaml: Callable[..., str]
) -> None:
    text = make_yaml(runbook_id, steps=STEPS)
    r = await client.post("/api/v1/runbooks", content=text, headers=YAML)
    assert r.status_code == 422 and r.headers["content-type"].startswith(PROBLEM)
    errors = r.json()["errors"]
    assert [e["step"] for e in errors] == ["check", "ask"]
    assert "'schemas/entity.json'" in errors[0]["message"] and "queries/q.graphql" in errors[1]["message"]
    partial = await client.post("/api/v1/runbooks", json=bundle(text, {"schemas/entity.json": SCHEMA}))
    assert partial.status_code == 422
    assert [e["step"] for e in partial.json()["errors"]] == ["ask"]
    assert (await client.get(f"/api/v1/runbooks/{runbook_id}")).status_code == 404


async def test_files_written_inline_in_the_runbook_count(
    client: httpx.AsyncClient, runbook_id: str, make_yaml: Callable[..., str]
) -> None:
    inline = "files:\n" + "".join(f"  {name}: {json.dumps(text)}\n" for name, text in FILES.items())
    r = await client.post(
        "/api/v1/runbooks", content=make_yaml(runbook_id, steps=STEPS, extra=inline), headers=YAML
    )
    assert r.status_code == 201, r.text
    stored = (await client.get(f"/api/v1/runbooks/{runbook_id}")).json()
    assert stored["definition"]["files"] == FILES


async def test_files_over_the_snapshot_cap_are_refused(
    client: httpx.AsyncClient, runbook_id: str, make_yaml: Callable[..., str]
) -> None:
    huge = {**FILES, "schemas/entity.json": '{"description": "' + "x" * MAX_SNAPSHOT_BYTES + '"}'}
    r = await client.post("/api/v1/runbooks", json=bundle(make_yaml(runbook_id, steps=STEPS), huge))
    assert r.status_code == 422 and r.headers["content-type"].startswith(PROBLEM)
    assert "over the" in r.json()["detail"] and "schemas/entity.json" in r.json()["detail"]


async def test_a_malformed_files_map_is_a_bad_request(
    client: httpx.AsyncClient, runbook_id: str, make_yaml: Callable[..., str]
) -> None:
    r = await client.post("/api/v1/runbooks", json=bundle(make_yaml(runbook_id, steps=STEPS), {"a": 1}))  # type: ignore[dict-item]
    assert r.status_code == 400, r.text


async def test_graphql_execute_carries_the_files_too(
    client: httpx.AsyncClient, runbook_id: str, make_yaml: Callable[..., str], probe: Any
) -> None:
    text = make_yaml(runbook_id, steps=STEPS)
    assert (await client.post("/api/v1/runbooks", json=bundle(text, FILES))).status_code == 201
    await approve(client, runbook_id)
    mutation = 'mutation { executeRunbook(id: "%s", params: {region: "us"}) { executionId } }' % runbook_id
    answer = (await client.post("/graphql", json={"query": mutation})).json()
    assert answer.get("errors") is None, answer
    [trigger], _ = await probe.triggers(runbook_id)
    assert trigger["body"]["data"]["files"] == FILES
