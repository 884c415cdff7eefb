"""A method a path does not have is 405 with an `Allow` header naming every method the path has
(rb_api.methods), before any check of the body's Content-Type."""

from __future__ import annotations

import httpx
import pytest

from rb_common.problems import PROBLEM_JSON


@pytest.mark.parametrize(
    ("method", "path", "headers", "allow"),
    [
        ("OPTIONS", "/api/v1/keys", {}, "GET, POST"),
        ("PUT", "/api/v1/keys", {"Content-Type": "application/json"}, "GET, POST"),
        ("PUT", "/api/v1/runbooks", {"Content-Type": "application/yaml"}, "GET, POST"),
        ("POST", "/api/v1/runbooks/x", {"Content-Type": "application/yaml"}, "DELETE, GET, PUT"),
        ("DELETE", "/api/v1/secrets", {}, "GET"),
        ("PATCH", "/graphql", {"Content-Type": "application/json"}, "GET, POST"),
    ],
)
async def test_405_names_every_method_of_the_path(
    client: httpx.AsyncClient, method: str, path: str, headers: dict[str, str], allow: str
) -> None:
    r = await client.request(method, path, headers=headers, content=b"id: x\n")
    assert r.status_code == 405, r.text
    assert r.headers["allow"] == allow
    assert r.headers["content-type"] == PROBLEM_JSON


async def test_a_method_the_path_has_still_checks_the_content_type(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/v1/keys", content=b"x", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415, r.text
