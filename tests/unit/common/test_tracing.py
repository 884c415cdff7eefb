"""rb_common.tracing without an endpoint: every call is a no-op and nothing of OpenTelemetry
is imported, by any service's modules (a child process, so that no other test's import counts).
With one, the SDK is loaded and the trace context goes into message headers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from rb_common import tracing
from rb_common.settings import Settings

PROBE = textwrap.dedent(
    """
    import json, sys
    from rb_common import tracing
    from rb_common.settings import Settings
    import rb_cli.services, rb_executor.service.main, rb_recorder.service, rb_notifier.service
    import rb_scheduler.service, rb_api.server, rb_engine.steps.http
    tracing.setup(Settings(), "executor")
    headers = {"Nats-Msg-Id": "x"}
    with tracing.span("rb.step", parent={"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}):
        tracing.inject(headers)
        tracing.failed("no")
    handle = tracing.start("rb.execution")
    with tracing.within(handle):
        tracing.end(handle)
    print(json.dumps({
        "headers": headers,
        "handle": handle,
        "enabled": tracing.enabled(),
        "otel": sorted(m for m in sys.modules if m.startswith("opentelemetry")),
    }))
    """
)


def probe(**env: str) -> dict[str, object]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env={**clean, **env}, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_without_an_endpoint_nothing_is_imported_and_nothing_is_made() -> None:
    result = probe()
    assert result == {"headers": {"Nats-Msg-Id": "x"}, "handle": None, "enabled": False, "otel": []}


def test_with_an_endpoint_the_sdk_is_loaded_and_headers_carry_the_context() -> None:
    # Port 9 (discard): nothing is exported in time; the spans are made all the same.
    result = probe(OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9", OTEL_BSP_EXPORT_TIMEOUT="100")
    assert result["enabled"] is True
    otel = result["otel"]
    assert isinstance(otel, list) and "opentelemetry.sdk.trace" in otel
    headers = result["headers"]
    assert isinstance(headers, dict)
    # The child of the given parent: same trace id, a new span id.
    _, trace_id, span_id, _ = headers["traceparent"].split("-")
    assert trace_id == "1" * 32 and span_id != "2" * 16


def test_the_setting_reads_the_standard_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    assert Settings().otel_endpoint == "http://collector:4318"
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT")
    assert Settings().otel_endpoint is None
    assert not tracing.enabled()  # this process set nothing up
