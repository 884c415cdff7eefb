"""/api/v1/authoring/*: validate a YAML text (issues with line and step, its graph, the edges on
a cycle), apply graph edits keeping comments, and dry-run it; /api/v1/schema/runbook."""

from __future__ import annotations

import httpx
from conftest import runbook_yaml

AUTH = "/api/v1/authoring"
COMMENTED = runbook_yaml("t-edit").replace("steps:\n", "steps:\n  # the first step fetches nothing\n")


async def test_a_valid_text_answers_its_graph(client: httpx.AsyncClient) -> None:
    r = await client.post(f"{AUTH}/validate", json={"yaml": COMMENTED})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["valid"] is True and body["issues"] == []
    assert [n["id"] for n in body["graph"]["nodes"]] == ["first", "second"]
    assert body["graph"]["edges"] == [{"from": "first", "to": "second"}]
    assert body["graph"]["cycle_edges"] == []


async def test_a_cycle_is_an_issue_with_its_line_and_marks_its_edges(client: httpx.AsyncClient) -> None:
    r = await client.post(
        f"{AUTH}/edit", json={"yaml": COMMENTED, "edit": {"op": "add_edge", "from": "second", "to": "first"}}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["valid"] is False
    cycle = [i for i in body["issues"] if "cycle" in i["message"]]
    assert cycle and cycle[0]["line"] and cycle[0]["step"] in {"first", "second"}, body["issues"]
    assert {(e["from"], e["to"]) for e in body["graph"]["cycle_edges"]} == {
        ("first", "second"),
        ("second", "first"),
    }
    assert "# the first step fetches nothing" in body["yaml"]


async def test_graph_edits_keep_comments_and_key_order(client: httpx.AsyncClient) -> None:
    text = COMMENTED
    edits = [
        {
            "op": "add_step",
            "step": {"id": "third", "type": "assert", "inputs": {"that": "${params.region == 'eu'}"}},
        },
        {"op": "add_edge", "from": "second", "to": "third"},
        {"op": "set_input", "id": "third", "key": "message", "value": "not eu: ${params.region}"},
        {"op": "add_edge", "from": "first", "to": "third"},
        {"op": "remove_edge", "from": "first", "to": "third"},
    ]
    for edit in edits:
        r = await client.post(f"{AUTH}/edit", json={"yaml": text, "edit": edit})
        assert r.status_code == 200, (edit, r.text)
        text = r.json()["yaml"]
        assert r.json()["valid"], r.json()["issues"]
    assert "# the first step fetches nothing" in text
    assert text.index("id: t-edit") < text.index("name: API test runbook") < text.index("steps:")
    assert "depends_on: [second]" in text and 'message: "not eu: ${params.region}"' in text
    r = await client.post(f"{AUTH}/edit", json={"yaml": text, "edit": {"op": "remove_step", "id": "second"}})
    assert r.json()["valid"] and "second" not in r.json()["yaml"]


async def test_bad_edits_and_bad_text_are_422_or_issues(client: httpx.AsyncClient) -> None:
    for edit in [
        {"op": "explode"},
        {"op": "add_edge", "from": "nope", "to": "first"},
        {"op": "add_step", "step": {"id": "first", "type": "transform"}},
    ]:
        r = await client.post(f"{AUTH}/edit", json={"yaml": COMMENTED, "edit": edit})
        assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json"), (
            r.text
        )
    r = await client.post(f"{AUTH}/validate", json={"yaml": "id: [unclosed\n"})
    assert r.status_code == 200 and r.json()["valid"] is False and r.json()["issues"][0]["line"]


async def test_dry_run_evaluates_params_and_keeps_secrets_and_outputs(client: httpx.AsyncClient) -> None:
    text = runbook_yaml(
        "t-dry",
        steps=(
            "  - id: a\n    type: transform\n    inputs: {size: '${params.batch_size * 2}'}\n    outputs: {size: $.size}\n"
            "  - id: b\n    type: http\n    inputs: {url: 'https://x/${params.region}', auth_token: '${secrets.TOKEN}'}\n"
            "  - id: c\n    type: transform\n    depends_on: [a, b]\n    inputs: {s: '${steps.a.outputs.size}'}\n"
        ),
    )
    r = await client.post(f"{AUTH}/dry-run", json={"yaml": text, "params": {"region": "eu"}})
    assert r.status_code == 200, r.text
    plan = r.json()
    assert plan["groups"] == [["a", "b"], ["c"]] and plan["order"] == ["a", "b", "c"]
    assert plan["external"] == ["b"]
    steps = {s["id"]: s for s in plan["steps"]}
    assert steps["a"]["inputs"] == {"size": 400}
    assert steps["b"]["inputs"] == {"url": "https://x/eu", "auth_token": "${secrets.TOKEN}"}
    assert steps["b"]["pending"] == ["auth_token"] and steps["c"]["pending"] == ["s"]
    bad = await client.post(f"{AUTH}/dry-run", json={"yaml": text, "params": {"region": "mars"}})
    assert bad.status_code == 422 and "region" in bad.json()["detail"]


async def test_the_schema_route_answers_the_cli_schema(client: httpx.AsyncClient) -> None:
    from rb_common.runbook_schema import runbook_json_schema

    r = await client.get("/api/v1/schema/runbook")
    assert r.status_code == 200 and r.json() == runbook_json_schema()
