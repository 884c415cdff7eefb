"""Header and idempotency details only; real traffic is covered by the integration tests."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import httpx
import pytest

from rb_common.settings import Settings
from rb_engine.clock import FakeClock
from rb_engine.steps.base import StepContext
from rb_engine.steps.http import HttpStep


def _ctx(transport: httpx.AsyncBaseTransport, key: str = "exec-1:fetch:1") -> StepContext:
    return StepContext(
        execution_id="exec-1",
        step_id="fetch",
        attempt=1,
        idempotency_key=key,
        settings=Settings(),
        clock=FakeClock(datetime(2024, 1, 1, tzinfo=UTC)),
        http_transport=transport,
    )


async def test_bearer_and_idempotency_headers_win_over_runbook_headers() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"ok": True})

    result = await HttpStep("data_fetch").run(
        {
            "source_url": "http://api.test/x",
            "auth_token": "tok",
            "headers": {
                "X-Team": "ops",
                "authorization": "Basic old",
                "idempotency-key": "forged",
            },
        },
        _ctx(httpx.MockTransport(handler), key="exec-1:fetch"),
    )
    assert result == {"ok": True}
    [request] = seen
    assert request.headers.get_list("authorization") == ["Bearer tok"]
    assert request.headers.get_list("idempotency-key") == ["exec-1:fetch"]
    assert request.headers["x-team"] == "ops"


async def test_query_params_and_json_body() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, text="created")

    ctx = _ctx(httpx.MockTransport(handler))
    result = await HttpStep("http").run(
        {
            "url": "http://api.test/items",
            "method": "POST",
            "params": {"limit": 5, "tags": ["a", "b"], "filter": {"x": 1}, "flag": True},
            "body": {"name": "n"},
        },
        ctx,
    )
    assert result == "created"
    [request] = seen
    assert request.url.params.get_list("tags") == ["a", "b"]
    assert request.url.params["limit"] == "5"
    assert json.loads(request.url.params["filter"]) == {"x": 1}
    assert request.url.params["flag"] == "true"
    assert json.loads(request.content) == {"name": "n"}
    assert ctx.meta["status"] == 201
    assert ctx.meta["headers"]["content-type"].startswith("text/plain")


async def test_no_body_sent_without_body_input() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    result = await HttpStep("http").run({"url": "http://api.test/ping"}, _ctx(httpx.MockTransport(handler)))
    assert result == ""
    assert seen[0].method == "GET"
    assert seen[0].content == b""


def test_unknown_spec_name_rejected() -> None:
    with pytest.raises(ValueError):
        HttpStep("api_call")


def test_validate_uses_the_named_spec() -> None:
    assert HttpStep("data_fetch").validate({"source_url": "http://x"}) == []
    assert HttpStep("http").validate({"url": "http://x"}) == []
    assert HttpStep("http").validate({}) != []
