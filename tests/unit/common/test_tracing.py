"""rb_common.tracing without an endpoint: every call is a no-op and nothing of OpenTelemetry
is imported by any service's modules (a child process, so that no other test's import counts).
With one, the SDK is loaded and the trace context goes into message headers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from rb_common import tracing
from rb_common.settings import Settings

PROBE = textwrap.dedent(
    """
    import importlib, json, sys
    from rb_common import tracing
    from rb_common.settings import Settings
    for name in sys.argv[1:]:
        importlib.import_module(name)
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
        "handle": None if handle is None else type(handle).__name__,
        "enabled": tracing.enabled(),
        "otel": sorted(m for m in sys.modules if m.startswith("opentelemetry")),
        "sdk": sorted(m for m in sys.modules if m.startswith(("opentelemetry.sdk", "opentelemetry.exporter", "rb_common.tracing_sdk"))),
        "provider": type(sys.modules["opentelemetry.trace"].get_tracer_provider()).__name__ if "opentelemetry.trace" in sys.modules else None,
    }))
    """
)


# Every service's composition root and the step that calls out; the API apart (below).
SERVICES = (
    "rb_cli.services",
    "rb_executor.service.main",
    "rb_recorder.service",
    "rb_notifier.service",
    "rb_scheduler.service",
    "rb_engine.steps.http",
)


def probe(*modules: str, **env: str) -> dict[str, object]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *modules],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_without_an_endpoint_nothing_is_imported_and_nothing_is_made() -> None:
    result = probe(*SERVICES)
    assert result == {
        "headers": {"Nats-Msg-Id": "x"},
        "handle": None,
        "enabled": False,
        "otel": [],
        "sdk": [],
        "provider": None,
    }


def test_the_api_loads_only_fastapis_own_use_of_the_opentelemetry_api() -> None:
    """FastAPI (0.165+) imports the OpenTelemetry *API* when it is installed, for its native
    telemetry, which stays off while no global tracer provider is set: rb never sets one, so the
    API process has no SDK, no exporter and makes no span either."""
    result = probe("rb_api.server", "rb_api.app")
    assert result["enabled"] is False and result["handle"] is None
    assert result["headers"] == {"Nats-Msg-Id": "x"}
    assert result["sdk"] == []
    assert result["provider"] == "ProxyTracerProvider"  # the API's default: no-op


class Collector(BaseHTTPRequestHandler):
    posts: ClassVar[list[tuple[str, str, int]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        Collector.posts.append((self.path, self.headers.get("Content-Type", ""), len(body)))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


def test_with_an_endpoint_the_sdk_is_loaded_and_headers_carry_the_context() -> None:
    Collector.posts = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        result = probe(*SERVICES, OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
    assert result["enabled"] is True
    assert result["handle"] == "_Span"
    # The spans went out at exit (the probe does not call shutdown: the SDK's atexit does).
    assert Collector.posts
    assert {(path, kind) for path, kind, _ in Collector.posts} == {("/v1/traces", "application/x-protobuf")}
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
