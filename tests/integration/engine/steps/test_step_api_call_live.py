"""api_call (REST and GraphQL) against a real loopback HTTP server."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rb_engine.steps.api_call import ApiCallStep
from rb_engine.steps.base import StepContext, StepFailed

pytestmark = pytest.mark.integration

MakeCtx = Callable[..., StepContext]
Server = Any  # conftest.ScriptedServer; conftest is not importable by a unique name


async def test_rest_extra_inputs_become_the_json_body(http_server: Server, make_ctx: MakeCtx) -> None:
    http_server.echo("/enrich")
    result = await ApiCallStep().run(
        {
            "endpoint": http_server.url_for("/enrich"),
            "auth_token": "tok",
            "entity_id": 7,
            "fields": ["name", "geo"],
        },
        make_ctx(idempotency_key="exec-1:enrich"),
    )
    assert result["method"] == "POST"
    assert result["body"] == {"entity_id": 7, "fields": ["name", "geo"]}
    [request] = http_server.requests_to("/enrich")
    assert request.json() == {"entity_id": 7, "fields": ["name", "geo"]}
    assert request.headers["idempotency-key"] == "exec-1:enrich"
    assert request.headers["authorization"] == "Bearer tok"


async def test_rest_explicit_body_wins(http_server: Server, make_ctx: MakeCtx) -> None:
    http_server.echo("/items")
    await ApiCallStep().run(
        {
            "endpoint": http_server.url_for("/items"),
            "method": "PATCH",
            "body": [1, 2, 3],
            "ignored_extra": True,
        },
        make_ctx(),
    )
    [request] = http_server.requests_to("/items")
    assert request.method == "PATCH"
    assert request.json() == [1, 2, 3]


async def test_rest_without_payload_sends_no_body(http_server: Server, make_ctx: MakeCtx) -> None:
    http_server.ok("/trigger", {"queued": True})
    result = await ApiCallStep().run({"endpoint": http_server.url_for("/trigger")}, make_ctx())
    assert result == {"queued": True}
    [request] = http_server.requests_to("/trigger")
    assert request.body == b""


async def test_rest_status_handling_is_shared_with_http(http_server: Server, make_ctx: MakeCtx) -> None:
    http_server.respond("/limited", 429, text="slow down")
    http_server.respond("/forbidden", 403, text="no")
    step = ApiCallStep()
    with pytest.raises(StepFailed) as err:
        await step.run({"endpoint": http_server.url_for("/limited")}, make_ctx())
    assert err.value.retryable is True
    assert "HTTP 429" in err.value.message and "slow down" in err.value.message
    with pytest.raises(StepFailed) as err:
        await step.run({"endpoint": http_server.url_for("/forbidden")}, make_ctx())
    assert err.value.retryable is False


async def test_graphql_inline_query_with_extra_inputs_as_variables(
    http_server: Server, make_ctx: MakeCtx
) -> None:
    http_server.graphql("/graphql", data={"entity": {"id": "7", "name": "Acme"}})
    query = "query($id: ID!) { entity(id: $id) { id name } }"
    result = await ApiCallStep().run(
        {"endpoint": http_server.url_for("/graphql"), "query": query, "id": "7"},
        make_ctx(idempotency_key="k-gql"),
    )
    assert result == {"entity": {"id": "7", "name": "Acme"}}
    [request] = http_server.requests_to("/graphql")
    assert request.method == "POST"
    assert request.json() == {"query": query, "variables": {"id": "7"}}
    assert request.headers["idempotency-key"] == "k-gql"


async def test_graphql_document_from_file_and_variables(
    http_server: Server, make_ctx: MakeCtx, tmp_path: Path
) -> None:
    (tmp_path / "queries").mkdir()
    document = "query Entities($n: Int) { entities(first: $n) { id } }\n"
    (tmp_path / "queries" / "entities.graphql").write_text(document)
    http_server.graphql("/graphql", data={"entities": [{"id": "1"}]})
    result = await ApiCallStep().run(
        {
            "endpoint": http_server.url_for("/graphql"),
            "query": "queries/entities.graphql",
            "variables": {"n": 5},
        },
        make_ctx(base_dir=tmp_path),
    )
    assert result == {"entities": [{"id": "1"}]}
    [request] = http_server.requests_to("/graphql")
    assert request.json() == {"query": document, "variables": {"n": 5}}


async def test_graphql_errors_fail_the_step(http_server: Server, make_ctx: MakeCtx) -> None:
    http_server.graphql(
        "/graphql",
        data=None,
        errors=[{"message": "entity 7 not found"}, {"message": "quota exceeded"}],
    )
    with pytest.raises(StepFailed) as err:
        await ApiCallStep().run(
            {"endpoint": http_server.url_for("/graphql"), "query": "{ entity { id } }"},
            make_ctx(),
        )
    assert err.value.retryable is False
    assert "entity 7 not found" in err.value.message
    assert "quota exceeded" in err.value.message


async def test_graphql_missing_file_fails(http_server: Server, make_ctx: MakeCtx) -> None:
    http_server.graphql("/graphql", data={})
    with pytest.raises(StepFailed) as err:
        await ApiCallStep().run(
            {"endpoint": http_server.url_for("/graphql"), "query": "missing.gql"}, make_ctx()
        )
    assert err.value.retryable is False
    assert http_server.requests_to("/graphql") == []
