"""data_fetch / http against a real loopback HTTP server."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest

from rb_engine.steps.base import StepContext, StepFailed
from rb_engine.steps.http import HttpStep

pytestmark = pytest.mark.integration

MakeCtx = Callable[..., StepContext]
Server = Any  # conftest.ScriptedServer; conftest is not importable by a unique name


async def test_fetch_json_sends_auth_and_idempotency_key(http_server: Server, make_ctx: MakeCtx) -> None:
    http_server.ok("/entities", {"data": {"entities": [{"id": 1}, {"id": 2}]}})
    ctx = make_ctx(idempotency_key="exec-9:ingest")
    result = await HttpStep("data_fetch").run(
        {
            "source_url": http_server.url_for("/entities"),
            "auth_token": "s3cret",
            "params": {"limit": 2},
            "headers": {"X-Trace": "t-1"},
        },
        ctx,
    )
    assert result == {"data": {"entities": [{"id": 1}, {"id": 2}]}}
    [request] = http_server.requests_to("/entities")
    assert request.method == "GET"
    assert request.query == {"limit": ["2"]}
    assert request.headers["idempotency-key"] == "exec-9:ingest"
    assert request.headers["authorization"] == "Bearer s3cret"
    assert request.headers["x-trace"] == "t-1"
    assert ctx.meta["status"] == 200
    assert ctx.meta["headers"]["content-type"] == "application/json"


async def test_post_json_body_arrives(http_server: Server, make_ctx: MakeCtx) -> None:
    http_server.echo("/echo")
    result = await HttpStep("http").run(
        {"url": http_server.url_for("/echo"), "method": "PUT", "body": {"a": [1, 2]}},
        make_ctx(),
    )
    assert result["method"] == "PUT"
    assert result["body"] == {"a": [1, 2]}
    assert result["headers"]["content-type"] == "application/json"
    [request] = http_server.requests_to("/echo")
    assert request.json() == {"a": [1, 2]}


async def test_text_body_is_returned_as_text(http_server: Server, make_ctx: MakeCtx) -> None:
    http_server.respond("/plain", 200, text="hello\nworld")
    result = await HttpStep("http").run({"url": http_server.url_for("/plain")}, make_ctx())
    assert result == "hello\nworld"


@pytest.mark.parametrize(
    ("status", "retryable"), [(500, True), (503, True), (429, True), (404, False), (400, False), (401, False)]
)
async def test_unexpected_status_classification(
    http_server: Server, make_ctx: MakeCtx, status: int, retryable: bool
) -> None:
    http_server.respond("/bad", status, json={"error": "nope nope"})
    url = http_server.url_for("/bad")
    ctx = make_ctx()
    with pytest.raises(StepFailed) as err:
        await HttpStep("http").run({"url": url}, ctx)
    assert err.value.retryable is retryable
    assert err.value.message.startswith(f"HTTP {status} from {url}: ")
    assert "nope nope" in err.value.message
    assert ctx.meta["status"] == status


async def test_expect_status(http_server: Server, make_ctx: MakeCtx) -> None:
    http_server.respond("/gone", 410, json={"gone": True})
    step = HttpStep("http")
    url = http_server.url_for("/gone")
    assert await step.run({"url": url, "expect_status": 410}, make_ctx()) == {"gone": True}
    assert await step.run({"url": url, "expect_status": [200, 410]}, make_ctx()) == {"gone": True}
    http_server.ok("/fine", {"ok": 1})
    with pytest.raises(StepFailed) as err:
        await step.run({"url": http_server.url_for("/fine"), "expect_status": 201}, make_ctx())
    assert err.value.retryable is False
    assert "HTTP 200" in err.value.message


async def test_fail_then_succeed_across_attempts(http_server: Server, make_ctx: MakeCtx) -> None:
    http_server.fail_then_succeed("/flaky", failures=2, body={"ok": True})
    step, url = HttpStep("http"), http_server.url_for("/flaky")
    for attempt in (1, 2):
        with pytest.raises(StepFailed) as err:
            await step.run({"url": url}, make_ctx(attempt=attempt, idempotency_key="k-1"))
        assert err.value.retryable is True
    assert await step.run({"url": url}, make_ctx(attempt=3, idempotency_key="k-1")) == {"ok": True}
    # Every attempt carries the same key, so the server can de-duplicate retries.
    keys = [r.headers["idempotency-key"] for r in http_server.requests_to("/flaky")]
    assert keys == ["k-1", "k-1", "k-1"]


async def test_connection_refused_is_retryable(make_ctx: MakeCtx) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(StepFailed) as err:
        await HttpStep("http").run({"url": f"http://127.0.0.1:{port}/x"}, make_ctx())
    assert err.value.retryable is True
    assert f"127.0.0.1:{port}" in err.value.message


async def test_invalid_url_is_not_retryable(make_ctx: MakeCtx) -> None:
    with pytest.raises(StepFailed) as err:
        await HttpStep("http").run({"url": "ftp://example.invalid/x"}, make_ctx())
    assert err.value.retryable is False


async def test_cancelling_a_hanging_request_returns_promptly(http_server: Server, make_ctx: MakeCtx) -> None:
    http_server.hang("/slow")
    task = asyncio.create_task(HttpStep("http").run({"url": http_server.url_for("/slow")}, make_ctx()))
    # Wait until the server really holds the request, then cancel as the runner's timeout would.
    assert await asyncio.to_thread(http_server.hanging.wait, 5)
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, timeout=2)
    assert time.monotonic() - started < 1.0


async def test_scripted_sequence_and_response_headers_in_meta(http_server: Server, make_ctx: MakeCtx) -> None:
    reply = http_server.Reply
    http_server.script("/seq", reply(502, text="bad gateway"), reply(200, json=[1], headers={"X-Page": "2"}))
    step, url = HttpStep("http"), http_server.url_for("/seq")
    with pytest.raises(StepFailed, match="HTTP 502"):
        await step.run({"url": url}, make_ctx())
    ctx = make_ctx()
    assert await step.run({"url": url}, ctx) == [1]
    assert ctx.meta["headers"]["x-page"] == "2"
    assert await step.run({"url": url}, make_ctx()) == [1]  # the last reply repeats
