"""metrics_publish against a loopback server standing in for the Pushgateway."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from rb_common.settings import Settings
from rb_engine.steps.base import StepContext, StepFailed
from rb_engine.steps.metrics_publish import MetricsPublishStep

pytestmark = pytest.mark.integration

MakeCtx = Callable[..., StepContext]
Server = Any  # conftest.ScriptedServer; conftest is not importable by a unique name


async def test_pushes_text_format_to_grouping_key(http_server: Server, make_ctx: MakeCtx) -> None:
    path = "/metrics/job/enrichment/instance/worker-1"
    http_server.respond(path, 200, text="")
    result = await MetricsPublishStep().run(
        {
            "metrics": {"rb_entities_processed": 180, "rb_success_ratio": 0.95},
            "job": "enrichment",
            "labels": {"instance": "worker-1"},
            "gateway_url": http_server.url + "/",
        },
        make_ctx(idempotency_key="exec-3:publish"),
    )
    assert result == {"published": 2}
    [request] = http_server.requests_to(path)
    assert request.method == "POST"
    assert request.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert request.headers["idempotency-key"] == "exec-3:publish"
    assert request.text == (
        "# TYPE rb_entities_processed gauge\nrb_entities_processed 180\n"
        "# TYPE rb_success_ratio gauge\nrb_success_ratio 0.95\n"
    )


async def test_gateway_from_settings(http_server: Server, make_ctx: MakeCtx) -> None:
    http_server.respond("/metrics/job/rb", 202, text="")
    ctx = make_ctx(settings=Settings(pushgateway_url=http_server.url))
    assert await MetricsPublishStep().run({"metrics": {"up": 1}}, ctx) == {"published": 1}
    [request] = http_server.requests_to("/metrics/job/rb")
    assert request.text == "# TYPE up gauge\nup 1\n"


async def test_gateway_rejection_fails(http_server: Server, make_ctx: MakeCtx) -> None:
    http_server.respond("/metrics/job/rb", 400, text="text format parsing error in line 1")
    with pytest.raises(StepFailed) as err:
        await MetricsPublishStep().run({"metrics": {"up": 1}, "gateway_url": http_server.url}, make_ctx())
    assert err.value.retryable is False
    assert "parsing error" in err.value.message


async def test_bad_metric_name_sends_nothing(http_server: Server, make_ctx: MakeCtx) -> None:
    with pytest.raises(StepFailed) as err:
        await MetricsPublishStep().run(
            {"metrics": {"bad-name": 1}, "gateway_url": http_server.url}, make_ctx()
        )
    assert err.value.retryable is False
    assert http_server.requests == []
