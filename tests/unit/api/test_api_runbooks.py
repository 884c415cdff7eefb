"""The runbook registry over HTTP: create, revise, list, versions, rollback, lifecycle, errors."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import yaml

from rb_common.loader import load_runbook_text

YAML = {"content-type": "application/yaml"}
PROBLEM = "application/problem+json"


def assert_problem(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == status
    assert {"type", "title", "status", "detail", "instance"} <= set(body)
    assert body["instance"] == response.request.url.path
    return body


async def test_create_from_yaml_then_get(
    client: httpx.AsyncClient, runbook_id: str, make_yaml: Callable[..., str]
) -> None:
    text = make_yaml(runbook_id)
    r = await client.post("/api/v1/runbooks", content=text, headers=YAML)
    assert r.status_code == 201, r.text
    assert r.json()["id"] == runbook_id
    assert (r.json()["revision"], r.json()["status"]) == (1, "DRAFT")
    assert r.headers["location"] == f"/api/v1/runbooks/{runbook_id}"

    r = await client.get(f"/api/v1/runbooks/{runbook_id}")
    assert r.status_code == 200
    got = r.json()
    assert (got["id"], got["revision"], got["status"], got["version"]) == (runbook_id, 1, "DRAFT", "1.0.0")
    assert got["name"] == "API test runbook"
    assert got["tags"] == ["api-test", "enrichment"]
    assert got["source"] == text
    assert got["definition"] == load_runbook_text(text)[0].snapshot()


async def test_create_from_json_and_text_yaml(
    client: httpx.AsyncClient, runbook_id: str, make_yaml: Callable[..., str]
) -> None:
    data = yaml.safe_load(make_yaml(runbook_id))
    r = await client.post("/api/v1/runbooks", json=data)
    assert r.status_code == 201, r.text
    other = runbook_id + "-y"
    r = await client.post(
        "/api/v1/runbooks", content=make_yaml(other), headers={"content-type": "text/yaml; charset=utf-8"}
    )
    assert r.status_code == 201, r.text
    r = await client.get(f"/api/v1/runbooks/{runbook_id}")
    assert r.json()["definition"]["steps"][0]["id"] == "first"


async def test_duplicate_id_is_409(
    client: httpx.AsyncClient, runbook_id: str, make_yaml: Callable[..., str]
) -> None:
    assert (
        await client.post("/api/v1/runbooks", content=make_yaml(runbook_id), headers=YAML)
    ).status_code == 201
    r = await client.post("/api/v1/runbooks", content=make_yaml(runbook_id), headers=YAML)
    body = assert_problem(r, 409)
    assert runbook_id in body["detail"]


async def test_put_versions_rollback(
    client: httpx.AsyncClient, runbook_id: str, make_yaml: Callable[..., str]
) -> None:
    v1 = make_yaml(runbook_id)
    v2 = v1.replace("version: 1.0.0", "version: 1.1.0")
    await client.post("/api/v1/runbooks", content=v1, headers=YAML)

    r = await client.put(f"/api/v1/runbooks/{runbook_id}", content=v2, headers=YAML)
    assert r.status_code == 200, r.text
    assert (r.json()["revision"], r.json()["version"]) == (2, "1.1.0")
    # The same body again changes nothing.
    r = await client.put(f"/api/v1/runbooks/{runbook_id}", content=v2, headers=YAML)
    assert r.json()["revision"] == 2

    r = await client.get(f"/api/v1/runbooks/{runbook_id}/versions")
    assert [(v["revision"], v["version"], v["current"]) for v in r.json()["items"]] == [
        (1, "1.0.0", False),
        (2, "1.1.0", True),
    ]
    r = await client.get(f"/api/v1/runbooks/{runbook_id}/versions/1")
    assert r.status_code == 200
    assert (r.json()["source"], r.json()["definition"]["version"]) == (v1, "1.0.0")

    r = await client.post(f"/api/v1/runbooks/{runbook_id}/rollback", json={"revision": 1})
    assert r.status_code == 200, r.text
    assert (r.json()["revision"], r.json()["version"], r.json()["rolled_back_to"]) == (3, "1.0.0", 1)
    current = (await client.get(f"/api/v1/runbooks/{runbook_id}")).json()
    first = (await client.get(f"/api/v1/runbooks/{runbook_id}/versions/1")).json()
    assert (current["revision"], current["definition"], current["source"]) == (3, first["definition"], v1)

    assert_problem(await client.get(f"/api/v1/runbooks/{runbook_id}/versions/99"), 404)
    assert_problem(await client.post(f"/api/v1/runbooks/{runbook_id}/rollback", json={"revision": 42}), 404)
    assert_problem(await client.post(f"/api/v1/runbooks/{runbook_id}/rollback", json={"revision": "x"}), 422)
    assert_problem(await client.post(f"/api/v1/runbooks/{runbook_id}/rollback", json={}), 422)


async def test_put_id_mismatch_and_missing(
    client: httpx.AsyncClient, runbook_id: str, make_yaml: Callable[..., str]
) -> None:
    await client.post("/api/v1/runbooks", content=make_yaml(runbook_id), headers=YAML)
    r = await client.put(
        f"/api/v1/runbooks/{runbook_id}", content=make_yaml(runbook_id + "-other"), headers=YAML
    )
    body = assert_problem(r, 422)
    assert "does not match" in body["detail"]
    r = await client.put(
        f"/api/v1/runbooks/{runbook_id}-nope", content=make_yaml(runbook_id + "-nope"), headers=YAML
    )
    assert_problem(r, 404)


async def test_lifecycle(
    client: httpx.AsyncClient, runbook_id: str, make_yaml: Callable[..., str], approver: dict[str, str]
) -> None:
    v1 = make_yaml(runbook_id)
    await client.post("/api/v1/runbooks", content=v1, headers=YAML)
    r = await client.post(f"/api/v1/runbooks/{runbook_id}/approve", headers=approver)
    assert (r.status_code, r.json()["status"]) == (200, "APPROVED")
    # An edit needs a new approval.
    r = await client.put(
        f"/api/v1/runbooks/{runbook_id}", content=v1.replace("owner: api-tests", "owner: ops"), headers=YAML
    )
    assert (r.json()["revision"], r.json()["status"]) == (2, "DRAFT")
    await client.post(f"/api/v1/runbooks/{runbook_id}/approve", headers=approver)

    r = await client.post(f"/api/v1/runbooks/{runbook_id}/deprecate")
    assert (r.status_code, r.json()["status"]) == (200, "DEPRECATED")
    assert (await client.get(f"/api/v1/runbooks/{runbook_id}")).json()["status"] == "DEPRECATED"
    assert_problem(
        await client.post(f"/api/v1/runbooks/{runbook_id}/execute", json={"params": {"region": "eu"}}), 409
    )
    assert_problem(await client.put(f"/api/v1/runbooks/{runbook_id}", content=v1, headers=YAML), 409)
    assert_problem(await client.post(f"/api/v1/runbooks/{runbook_id}/approve"), 409)
    assert_problem(await client.post(f"/api/v1/runbooks/{runbook_id}/rollback", json={"revision": 1}), 409)


async def test_list_filters_and_paging(
    client: httpx.AsyncClient, runbook_id: str, make_yaml: Callable[..., str], approver: dict[str, str]
) -> None:
    ids = [f"{runbook_id}-{i}" for i in range(3)]
    for rid in ids:
        await client.post("/api/v1/runbooks", content=make_yaml(rid), headers=YAML)
    tagged = make_yaml(runbook_id + "-tagged").replace("tags: [api-test, enrichment]", "tags: [special]")
    await client.post("/api/v1/runbooks", content=tagged, headers=YAML)
    await client.post(f"/api/v1/runbooks/{ids[1]}/approve", headers=approver)

    r = await client.get("/api/v1/runbooks", params={"limit": 2, "offset": 0})
    page = r.json()
    assert (page["total"], page["limit"], page["offset"], len(page["items"])) == (4, 2, 0, 2)
    rest = (await client.get("/api/v1/runbooks", params={"limit": 2, "offset": 2})).json()["items"]
    assert sorted(i["id"] for i in page["items"] + rest) == sorted([*ids, runbook_id + "-tagged"])

    approved = (await client.get("/api/v1/runbooks", params={"status": "APPROVED"})).json()
    assert [i["id"] for i in approved["items"]] == [ids[1]]
    special = (await client.get("/api/v1/runbooks", params={"tag": "special"})).json()
    assert ([i["id"] for i in special["items"]], special["total"]) == ([runbook_id + "-tagged"], 1)
    both = (
        await client.get("/api/v1/runbooks", params={"tag": "enrichment", "limit": 1, "offset": 1})
    ).json()
    assert (both["total"], len(both["items"])) == (3, 1)

    assert_problem(await client.get("/api/v1/runbooks", params={"status": "BOGUS"}), 422)
    assert_problem(await client.get("/api/v1/runbooks", params={"limit": 0}), 422)
    assert_problem(await client.get("/api/v1/runbooks", params={"offset": -1}), 422)


async def test_delete(client: httpx.AsyncClient, runbook_id: str, make_yaml: Callable[..., str]) -> None:
    await client.post("/api/v1/runbooks", content=make_yaml(runbook_id), headers=YAML)
    r = await client.delete(f"/api/v1/runbooks/{runbook_id}")
    assert r.status_code == 204
    assert_problem(await client.get(f"/api/v1/runbooks/{runbook_id}"), 404)
    assert_problem(await client.get(f"/api/v1/runbooks/{runbook_id}/versions"), 404)
    assert_problem(await client.delete(f"/api/v1/runbooks/{runbook_id}"), 404)
    # The id is free again.
    assert (
        await client.post("/api/v1/runbooks", content=make_yaml(runbook_id), headers=YAML)
    ).status_code == 201


async def test_unknown_runbook_routes_are_404_problems(client: httpx.AsyncClient) -> None:
    for method, path in [
        ("GET", "/api/v1/runbooks/missing-rb"),
        ("GET", "/api/v1/runbooks/missing-rb/versions"),
        ("GET", "/api/v1/runbooks/missing-rb/versions/1"),
        ("POST", "/api/v1/runbooks/missing-rb/approve"),
        ("POST", "/api/v1/runbooks/missing-rb/deprecate"),
        ("POST", "/api/v1/runbooks/missing-rb/execute"),
        ("POST", "/api/v1/runbooks/Not.A.Valid*Id/execute"),
        ("GET", "/api/v1/nothing-here"),
    ]:
        body = assert_problem(await client.request(method, path), 404)
        assert body["title"]


# -- invalid definitions ---------------------------------------------------------------------------


async def test_invalid_yaml_is_400_with_line(client: httpx.AsyncClient, runbook_id: str) -> None:
    text = f"id: {runbook_id}\nname: x\nsteps:\n  - id: a\n    type: transform\n   bad: [unclosed\n"
    body = assert_problem(await client.post("/api/v1/runbooks", content=text, headers=YAML), 400)
    assert body["errors"][0]["line"] in (5, 6)
    assert "invalid YAML" in body["errors"][0]["message"]


async def test_invalid_json_is_400_with_line(client: httpx.AsyncClient) -> None:
    body = assert_problem(
        await client.post(
            "/api/v1/runbooks",
            content=b'{\n "id": "x",\n "name": }',
            headers={"content-type": "application/json"},
        ),
        400,
    )
    assert body["errors"][0]["line"] == 3


async def test_unknown_keys_are_listed_with_lines(client: httpx.AsyncClient, runbook_id: str) -> None:
    text = (
        f"id: {runbook_id}\nname: x\ncolour: blue\nsteps:\n  - id: a\n    type: transform\n    retries: 3\n"
    )
    body = assert_problem(await client.post("/api/v1/runbooks", content=text, headers=YAML), 422)
    found = {(e["message"], e["line"], e["step"]) for e in body["errors"]}
    assert ("colour: unknown key 'colour'", 3, None) in found
    assert ("steps[0].retries: unknown key 'retries'", 7, "a") in found
    assert_problem(await client.get(f"/api/v1/runbooks/{runbook_id}"), 404)


async def test_cycle_and_other_issues_are_422(client: httpx.AsyncClient, runbook_id: str) -> None:
    text = (
        f"id: {runbook_id}\n"
        "name: x\n"
        "steps:\n"
        "  - id: a\n"
        "    type: transform\n"
        "    depends_on: [b]\n"
        "  - id: b\n"
        "    type: transform\n"
        "    depends_on: [a]\n"
        "  - id: c\n"
        "    type: no_such_type\n"
    )
    body = assert_problem(await client.post("/api/v1/runbooks", content=text, headers=YAML), 422)
    messages = [e["message"] for e in body["errors"]]
    assert any("dependency cycle: a -> b -> a" in m for m in messages), messages
    assert any("unknown step type 'no_such_type'" in m for m in messages), messages
    assert all({"step", "message", "line"} <= set(e) for e in body["errors"])
    cycle = next(e for e in body["errors"] if "cycle" in e["message"])
    assert (cycle["step"], cycle["line"]) == ("a", 6)


async def test_warnings_do_not_block(
    client: httpx.AsyncClient, runbook_id: str, make_yaml: Callable[..., str]
) -> None:
    text = make_yaml(runbook_id).replace("legal_basis: Tests of the rb API\n", "")
    r = await client.post("/api/v1/runbooks", content=text, headers=YAML)
    assert r.status_code == 201
    assert any("legal_basis" in w["message"] for w in r.json()["warnings"])


async def test_body_problems(
    client: httpx.AsyncClient, runbook_id: str, make_yaml: Callable[..., str]
) -> None:
    assert_problem(await client.post("/api/v1/runbooks", content=b"", headers=YAML), 400)
    assert_problem(await client.post("/api/v1/runbooks", content=b"\xff\xfe", headers=YAML), 400)
    assert_problem(await client.post("/api/v1/runbooks", content=b"- a\n- b\n", headers=YAML), 422)
    assert_problem(
        await client.post("/api/v1/runbooks", content=b"42", headers={"content-type": "application/json"}),
        422,
    )
    assert_problem(
        await client.post(
            "/api/v1/runbooks", content=make_yaml(runbook_id), headers={"content-type": "image/png"}
        ),
        415,
    )
    deep = "[" * 5000 + "]" * 5000
    assert_problem(
        await client.post("/api/v1/runbooks", content=deep, headers={"content-type": "application/json"}), 400
    )


async def test_oversized_body_is_413(
    client: httpx.AsyncClient, runbook_id: str, make_yaml: Callable[..., str]
) -> None:
    big = make_yaml(runbook_id) + "#" + "x" * (70 * 1024) + "\n"  # the test app's limit is 64 KiB
    body = assert_problem(await client.post("/api/v1/runbooks", content=big, headers=YAML), 413)
    assert "limit" in body["detail"]

    async def chunks():  # no Content-Length: the limit is enforced while reading
        for _ in range(80):
            yield b"#" + b"x" * 1023

    assert_problem(await client.post("/api/v1/runbooks", content=chunks(), headers=YAML), 413)
    assert_problem(await client.post(f"/api/v1/runbooks/{runbook_id}/execute", content=big), 413)
