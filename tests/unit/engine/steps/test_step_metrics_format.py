from __future__ import annotations

import base64
from datetime import UTC, datetime

import httpx
import pytest

from rb_common.settings import Settings
from rb_engine.clock import FakeClock
from rb_engine.steps.base import StepContext, StepFailed
from rb_engine.steps.metrics_publish import MetricsPublishStep, exposition, push_url


def test_exposition_is_gauges_in_text_format() -> None:
    text = exposition({"rb_entities_total": 42, "rb_success_ratio": 0.975, "ns:sub_metric": -1})
    assert text == (
        "# TYPE rb_entities_total gauge\nrb_entities_total 42\n"
        "# TYPE rb_success_ratio gauge\nrb_success_ratio 0.975\n"
        "# TYPE ns:sub_metric gauge\nns:sub_metric -1\n"
    )


def test_special_float_values() -> None:
    text = exposition({"a": float("nan"), "b": float("inf"), "c": float("-inf"), "d": 1e-7})
    assert text.splitlines()[1::2] == ["a NaN", "b +Inf", "c -Inf", "d 1e-07"]


@pytest.mark.parametrize("name", ["1abc", "has-dash", "sp ace", "", "é"])
def test_rejects_invalid_metric_names(name: str) -> None:
    with pytest.raises(ValueError, match="invalid metric name"):
        exposition({name: 1})


@pytest.mark.parametrize("value", [True, "1", None])
def test_rejects_non_numbers(value: object) -> None:
    with pytest.raises(ValueError, match="not a number"):
        exposition({"m": value})


def test_push_url_grouping_key() -> None:
    assert push_url("http://gw:9091/", "rb", {}) == "http://gw:9091/metrics/job/rb"
    assert (
        push_url("http://gw:9091", "nightly job", {"instance": "a1", "env": "prod"})
        == "http://gw:9091/metrics/job/nightly%20job/instance/a1/env/prod"
    )


def test_push_url_base64_for_slashes_and_empty_values() -> None:
    url = push_url("http://gw", "rb", {"path": "a/b", "empty": ""})
    encoded = base64.urlsafe_b64encode(b"a/b").decode()
    assert url == f"http://gw/metrics/job/rb/path@base64/{encoded}/empty@base64/="


def test_push_url_rejects_bad_label_names() -> None:
    with pytest.raises(ValueError):
        push_url("http://gw", "rb", {"bad-name": "x"})


def _ctx(settings: Settings, transport: httpx.AsyncBaseTransport | None = None) -> StepContext:
    return StepContext(
        execution_id="e",
        step_id="m",
        attempt=1,
        idempotency_key="k",
        settings=settings,
        clock=FakeClock(datetime(2024, 1, 1, tzinfo=UTC)),
        http_transport=transport,
    )


async def test_no_gateway_fails_without_retry() -> None:
    with pytest.raises(StepFailed) as err:
        await MetricsPublishStep().run({"metrics": {"a": 1}}, _ctx(Settings(pushgateway_url=None)))
    assert err.value.retryable is False


async def test_uses_settings_gateway_and_default_job() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    ctx = _ctx(Settings(pushgateway_url="http://gw.test:9091"), httpx.MockTransport(handler))
    result = await MetricsPublishStep().run({"metrics": {"a": 1, "b": 2.5}}, ctx)
    assert result == {"published": 2}
    [request] = seen
    assert request.method == "POST"
    assert str(request.url) == "http://gw.test:9091/metrics/job/rb"
    assert request.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert request.content == b"# TYPE a gauge\na 1\n# TYPE b gauge\nb 2.5\n"
