"""`metrics_publish`: push gauges to a Prometheus Pushgateway in the text exposition format.

POST (not PUT) so a push replaces only the metrics it names and leaves other metrics that
earlier steps pushed to the same grouping key alone.
"""

from __future__ import annotations

import base64
import math
import re
from typing import Any
from urllib.parse import quote

from rb_common.step_specs import SPECS
from rb_engine.steps.base import SpecValidated, StepContext, StepFailed
from rb_engine.steps.http import send_request

METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def format_value(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"not a number: {value!r}")
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def exposition(metrics: dict[str, Any]) -> str:
    """Gauges in the text format; raises ValueError naming the first bad metric."""
    lines: list[str] = []
    for name, value in metrics.items():
        if not METRIC_NAME.match(name):
            raise ValueError(f"invalid metric name {name!r}")
        try:
            formatted = format_value(value)
        except ValueError as exc:
            raise ValueError(f"metric {name!r}: {exc}") from None
        lines.append(f"# TYPE {name} gauge\n{name} {formatted}\n")
    return "".join(lines)


def _path_segment(name: str, value: str) -> str:
    # The Pushgateway's rule: values with '/' (or empty ones) travel base64url-encoded.
    if not value or "/" in value:
        encoded = base64.urlsafe_b64encode(value.encode("utf-8")).decode("ascii") or "="
        return f"{name}@base64/{encoded}"
    return f"{name}/{quote(value, safe='')}"


def push_url(gateway_url: str, job: str, labels: dict[str, str]) -> str:
    """`{gateway}/metrics/job/{job}/{label}/{value}...`, the Pushgateway grouping key."""
    parts = [gateway_url.rstrip("/"), "metrics", _path_segment("job", job)]
    for name, value in labels.items():
        if not LABEL_NAME.match(name) or name == "job":
            raise ValueError(f"invalid grouping label name {name!r}")
        parts.append(_path_segment(name, str(value)))
    return "/".join(parts)


class MetricsPublishStep(SpecValidated):
    spec = SPECS["metrics_publish"]

    async def run(self, inputs: dict[str, Any], ctx: StepContext) -> Any:
        gateway = inputs.get("gateway_url") or ctx.settings.pushgateway_url
        if not gateway:
            raise StepFailed("no Pushgateway: set 'gateway_url' or RB_PUSHGATEWAY_URL", retryable=False)
        metrics = inputs.get("metrics")
        if not isinstance(metrics, dict) or not metrics:
            raise StepFailed("'metrics' must be a non-empty mapping name -> number", retryable=False)
        try:
            body = exposition(metrics)
            url = push_url(gateway, inputs.get("job") or "rb", inputs.get("labels") or {})
        except ValueError as exc:
            raise StepFailed(str(exc), retryable=False) from None
        await send_request(
            ctx,
            method="POST",
            url=url,
            headers={"Content-Type": CONTENT_TYPE},
            content=body.encode("utf-8"),
        )
        return {"published": len(metrics)}
