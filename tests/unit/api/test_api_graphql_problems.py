"""GraphQL's request errors are problems (rb_api.graphql_problems): strawberry's text/plain 4xx
answers reach the client as application/problem+json with the same status; GraphQL's own errors
(HTTP 200 with `errors`) and GraphiQL are unchanged."""

from __future__ import annotations

import httpx
import pytest

from rb_common.problems import PROBLEM_JSON


@pytest.mark.parametrize(
    ("method", "kwargs", "detail"),
    [
        ("POST", {}, "Unsupported content type"),
        ("POST", {"json": {}}, "No GraphQL query found in the request"),
        ("POST", {"json": [1]}, "Batching is not enabled"),
        ("GET", {"params": {"query": "mutation { x }"}}, "mutations are not allowed when using GET"),
        ("GET", {"headers": {"Accept": "application/json"}}, "No GraphQL query found in the request"),
    ],
)
async def test_strawberry_request_errors_are_problems(
    client: httpx.AsyncClient, method: str, kwargs: dict[str, object], detail: str
) -> None:
    r = await client.request(method, "/graphql", **kwargs)  # type: ignore[arg-type]
    assert r.status_code == 400, r.text
    assert r.headers["content-type"] == PROBLEM_JSON
    body = r.json()
    assert body["status"] == 400
    assert body["type"] == "urn:rb:problem:invalid-graphql-request"
    assert body["detail"] == detail
    assert body["instance"] == "/graphql"


async def test_graphql_errors_and_graphiql_are_unchanged(client: httpx.AsyncClient) -> None:
    r = await client.post("/graphql", json={"query": "{"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert r.json()["errors"]
    page = await client.get("/graphql", headers={"Accept": "text/html"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
