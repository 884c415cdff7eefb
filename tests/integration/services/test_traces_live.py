"""Traces and JSON logs of a real run through the services (API, executor, notifier as
processes, over the session's NATS): an OTLP/HTTP receiver on loopback decodes the spans the
services export (protobuf, opentelemetry-proto) and finds one trace, trigger -> execution ->
step attempt -> outbound HTTP call (and the notifier's webhook delivery under the execution);
the HTTP peer got the call's context in `traceparent`. Without OTEL_EXPORTER_OTLP_ENDPOINT, a
run imports nothing of OpenTelemetry."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span as SpanProto
from services_support import Services, api, approve, wait_for_event, wait_terminal

from rb_common.bus import Bus
from rb_common.events import EventType

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Span:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    kind: int
    attributes: dict[str, Any]


class Receiver(BaseHTTPRequestHandler):
    """OTLP/HTTP (protobuf) on /v1/traces, as a collector answers it."""

    spans: ClassVar[list[Span]] = []
    paths: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        Receiver.paths.append(self.path)
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            service = next(
                a.value.string_value for a in resource_spans.resource.attributes if a.key == "service.name"
            )
            for scope in resource_spans.scope_spans:
                for span in scope.spans:
                    attributes = {a.key: _value(a.value) for a in span.attributes}
                    Receiver.spans.append(
                        Span(
                            service,
                            span.name,
                            span.trace_id.hex(),
                            span.span_id.hex(),
                            span.parent_span_id.hex(),
                            span.kind,
                            attributes,
                        )
                    )
        answer = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *_: object) -> None:
        pass


def _value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


class Peer(BaseHTTPRequestHandler):
    """The step's HTTP target and the notification webhook: records each request's headers."""

    requests: ClassVar[list[tuple[str, str, dict[str, str]]]] = []

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        Peer.requests.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *_: object) -> None:
        pass


def _serve(handler: type[BaseHTTPRequestHandler]) -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield int(server.server_address[1])
    server.shutdown()


@pytest.fixture
def collector() -> Iterator[int]:
    Receiver.spans, Receiver.paths = [], []
    yield from _serve(Receiver)


@pytest.fixture
def peer() -> Iterator[int]:
    Peer.requests = []
    yield from _serve(Peer)


def runbook(runbook_id: str, peer: int) -> str:
    return f"""
id: {runbook_id}
name: Traces
legal_basis: "tests"
notify:
  - on: [succeeded]
    webhook: {{url: "http://127.0.0.1:{peer}/hook"}}
steps:
  - {{id: call, type: http, inputs: {{method: GET, url: "http://127.0.0.1:{peer}/ping"}}}}
  - {{id: after, type: transform, depends_on: [call], inputs: {{n: 1}}}}
"""


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def until(check: Any, timeout: float, what: str, logs: Any = None) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}" + (f"\n{logs()}" if logs else ""))
        await asyncio.sleep(0.2)


async def test_one_trace_from_the_trigger_to_the_outbound_call(
    services: Services, bus: Bus, collector: int, peer: int
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}/api/v1"
    services.env.update(
        {
            "RB_API_ADDR": f"127.0.0.1:{port}",
            "RB_EGRESS_ALLOW": "127.0.0.1/32",
            "RB_LOG_LEVEL": "DEBUG",
            "RB_LOG_FORMAT": "json",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector}",
            "OTEL_BSP_SCHEDULE_DELAY": "100",  # ms: spans leave each service quickly
        }
    )
    for name in ("executor", "notifier", "api"):
        services.start(name)

    def ready() -> bool:
        try:
            return api.get(f"http://127.0.0.1:{port}/health/ready", timeout=2).status_code == 200
        except Exception:
            return False

    await until(ready, 60, "the API", services.logs)
    runbook_id = f"traces-{uuid.uuid4().hex[:8]}"
    created = api.post(
        f"{base}/runbooks", content=runbook(runbook_id, peer), headers={"Content-Type": "application/yaml"}
    )
    assert created.status_code == 201, created.text
    assert approve(base, runbook_id).status_code == 200
    started = api.post(f"{base}/runbooks/{runbook_id}/execute", json={})
    assert started.status_code == 202, started.text
    execution_id = started.json()["execution_id"]
    events = await wait_terminal(bus, execution_id, timeout=90)
    assert events[-1].type == EventType.EXECUTION_SUCCEEDED, [e.type for e in events]
    await wait_for_event(bus, execution_id, lambda e: e.type == EventType.NOTIFICATION_SENT, 60)

    def named(name: str, **attributes: Any) -> list[Span]:
        return [
            s
            for s in Receiver.spans
            if s.name == name and all(s.attributes.get(k) == v for k, v in attributes.items())
        ]

    def complete() -> bool:
        return (
            len(named("rb.trigger", **{"rb.execution_id": execution_id})) == 1
            and len(named("rb.execution", **{"rb.execution_id": execution_id})) == 1
            and len(named("rb.step", **{"rb.execution_id": execution_id})) == 2
            and len(named("GET")) == 1
            and len(named("notify webhook", **{"rb.execution_id": execution_id})) == 1
        )

    await until(complete, 60, "the run's spans", lambda: "\n".join(map(str, Receiver.spans)))
    assert set(Receiver.paths) == {"/v1/traces"}

    [trigger] = named("rb.trigger", **{"rb.execution_id": execution_id})
    [execution] = named("rb.execution", **{"rb.execution_id": execution_id})
    steps = {s.attributes["rb.step_id"]: s for s in named("rb.step", **{"rb.execution_id": execution_id})}
    [call] = named("GET")
    [delivery] = named("notify webhook", **{"rb.execution_id": execution_id})

    # One trace, across three processes.
    assert {s.trace_id for s in (trigger, execution, *steps.values(), call, delivery)} == {trigger.trace_id}
    assert (trigger.service, execution.service, call.service, delivery.service) == (
        "rb-api",
        "rb-executor",
        "rb-executor",
        "rb-notifier",
    )
    # The chain: trigger -> execution -> each step attempt -> the HTTP step's outbound call.
    assert trigger.parent_id == ""
    assert trigger.kind == SpanProto.SPAN_KIND_PRODUCER
    assert execution.parent_id == trigger.span_id
    assert execution.attributes["rb.runbook_id"] == runbook_id
    assert execution.attributes["rb.status"] == "SUCCEEDED"
    assert set(steps) == {"call", "after"}
    assert {s.parent_id for s in steps.values()} == {execution.span_id}
    assert steps["call"].attributes["rb.step_type"] == "http"
    assert call.parent_id == steps["call"].span_id
    assert call.kind == SpanProto.SPAN_KIND_CLIENT
    assert call.attributes["server.address"] == "127.0.0.1"
    assert delivery.parent_id == execution.span_id
    # The peer got the outbound call's context.
    [(_, _, ping_headers)] = [r for r in Peer.requests if r[1] == "/ping"]
    assert ping_headers["traceparent"].split("-")[1:3] == [call.trace_id, call.span_id]

    # A caller's W3C traceparent (a CI job, a deploy pipeline): the execution joins its trace.
    caller_trace, caller_span = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    joined = api.post(
        f"{base}/runbooks/{runbook_id}/execute",
        json={},
        headers={"traceparent": f"00-{caller_trace}-{caller_span}-01"},
    )
    assert joined.status_code == 202, joined.text
    joined_id = joined.json()["execution_id"]
    await wait_terminal(bus, joined_id, timeout=90)

    def joined_spans() -> bool:
        return len(named("rb.execution", **{"rb.execution_id": joined_id})) == 1

    await until(joined_spans, 60, "the joined run's spans", lambda: "\n".join(map(str, Receiver.spans)))
    [joined_trigger] = named("rb.trigger", **{"rb.execution_id": joined_id})
    [joined_execution] = named("rb.execution", **{"rb.execution_id": joined_id})
    assert (joined_trigger.trace_id, joined_trigger.parent_id) == (caller_trace, caller_span)
    assert joined_execution.trace_id == caller_trace and joined_execution.parent_id == joined_trigger.span_id

    # The executor's log: JSON lines only, naming the execution, and the step where a step ran.
    services.stop_all()
    lines = [
        json.loads(line)
        for path in services.home.glob("executor-*.log")
        for line in path.read_text().splitlines()
        if line.strip()
    ]
    assert lines and all({"time", "level", "service", "message", "execution_id", "step_id"} <= set(x) for x in lines)
    mine = [x for x in lines if x["execution_id"] == execution_id]
    assert {x["step_id"] for x in mine} >= {"call", "after"}, mine
    assert all(x["trace_id"] == trigger.trace_id for x in mine if "trace_id" in x)
    assert any("trace_id" in x for x in mine)


NO_TRACING = textwrap.dedent(
    """
    import asyncio, json, sys
    from services_support import NATS_URL, connect, publish_trigger, wait_terminal
    from rb_common import logs, tracing
    from rb_common.settings import Settings
    from rb_executor.service.main import run_executor

    YAML = sys.argv[1]

    async def main():
        settings = Settings()
        logs.configure(settings, "executor")
        tracing.setup(settings, "executor")
        stop = asyncio.Event()
        executor = asyncio.ensure_future(run_executor(settings, stop))
        bus = await connect(NATS_URL, namespace=settings.namespace, name="rb-tests-no-tracing")
        execution_id = await publish_trigger(bus, YAML)
        events = await wait_terminal(bus, execution_id, timeout=60)
        stop.set()
        await executor
        await bus.close()
        print(json.dumps({
            "last": events[-1].type.value,
            "steps": sorted(e.data["step_id"] for e in events if e.type.value == "step.succeeded"),
            "enabled": tracing.enabled(),
            "otel": sorted(m for m in sys.modules if m.startswith("opentelemetry")),
        }))

    asyncio.run(main())
    """
)


def test_without_an_endpoint_a_run_loads_no_opentelemetry(services: Services, peer: int) -> None:
    """A real run (executor and its workers in the child process, an HTTP step, NATS): with no
    OTEL_EXPORTER_OTLP_ENDPOINT nothing of OpenTelemetry is imported, so no span can be made."""
    env = {k: v for k, v in services.env.items() if not k.startswith("OTEL_")}
    env.update(
        {
            "RB_EGRESS_ALLOW": "127.0.0.1/32",
            "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), env.get("PYTHONPATH", "")]),
        }
    )
    yaml_text = runbook(f"untraced-{uuid.uuid4().hex[:8]}", peer)
    done = subprocess.run(
        [sys.executable, "-c", NO_TRACING, yaml_text], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["last"] == "execution.succeeded", done.stderr[-3000:]
    assert result["steps"] == ["after", "call"]
    assert [r[1] for r in Peer.requests] == ["/ping"]  # the HTTP step really called out
    assert "traceparent" not in Peer.requests[0][2]
    assert result["enabled"] is False
    assert result["otel"] == []
