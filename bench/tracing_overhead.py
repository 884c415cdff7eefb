"""What traces and JSON log lines cost per step, on the paths a step takes through the services.

Per step the services do, for traces: the coordinator makes the execution's span current while
it advances (`within`) and puts its context on about three messages (events, the task:
`inject`); the worker opens the attempt's span from the task's headers (`span`) and passes the
context back (`carried`); the http step opens a client span and injects into the request. For
logs: a `bound` block in the coordinator and one in the worker, and (RB_LOG_LEVEL=DEBUG) a JSON
line. This times exactly those calls, N times over:

  off       no OTEL_EXPORTER_OTLP_ENDPOINT (the default): the calls return at once, nothing of
            OpenTelemetry is imported (checked)
  on        the SDK with its batch processor and OTLP/HTTP exporter, sending to a loopback
            receiver that answers 200 (the export runs on the SDK's thread, as in a service)
  json log  one JSON log line with the ids, formatted (to a null stream)

    .venv/bin/python bench/tracing_overhead.py [--steps 20000]

Results (numbers vary with the machine's load): see docs/architecture.md, "Benchmarks".
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from rb_common import logs, tracing
from rb_common.settings import Settings


class Discard(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


def one_step(trigger: dict[str, str], execution: object) -> None:
    # coordinator: advance with the execution current, three messages out
    with logs.bound("e" * 32), tracing.within(execution):
        task: dict[str, str] = tracing.inject({"Nats-Msg-Id": "k"})
        for _ in range(2):
            tracing.inject({"Nats-Msg-Id": "event"})
    # worker: the attempt's span from the task's headers, an HTTP call inside, the outcome back
    with (
        logs.bound("e" * 32, "step"),
        tracing.span(
            "rb.step",
            parent=task,
            kind="consumer",
            attributes={"rb.execution_id": "e" * 32, "rb.step_id": "step", "rb.step_type": "http", "rb.attempt": 1},
        ),
    ):
        with tracing.span("GET", kind="client", attributes={"http.request.method": "GET", "server.address": "h"}):
            tracing.inject({"Idempotency-Key": "k"})
        tracing.carried(task)


def reference_step(trigger: dict[str, str], execution: object) -> None:
    """The yardstick: one step's message headers and attribute dicts, without any call."""
    task = {"Nats-Msg-Id": "k"}
    for _ in range(2):
        {"Nats-Msg-Id": "event"}  # noqa: B018
    {"rb.execution_id": "e" * 32, "rb.step_id": "step", "rb.step_type": "http", "rb.attempt": 1}  # noqa: B018
    {"Idempotency-Key": "k", **task}  # noqa: B018


def timed(steps: int, execution: object, run: Callable[[dict[str, str], object], None] = one_step) -> float:
    trigger: dict[str, str] = {}
    run(trigger, execution)  # warm up
    began = time.perf_counter()
    for _ in range(steps):
        run(trigger, execution)
    return (time.perf_counter() - began) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20_000)
    steps = parser.parse_args().steps

    reference = timed(steps, None, reference_step)
    off = timed(steps, None)
    loaded = sorted(m for m in sys.modules if m.startswith("opentelemetry"))
    assert not loaded, loaded

    server = ThreadingHTTPServer(("127.0.0.1", 0), Discard)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    tracing.setup(Settings(otel_endpoint=f"http://127.0.0.1:{server.server_address[1]}"), "bench")
    execution = tracing.start("rb.execution")
    on = timed(steps, execution)
    tracing.end(execution)
    tracing.shutdown()
    server.shutdown()

    logger = logging.getLogger("bench")
    logger.propagate = False
    handler = logging.StreamHandler(io.StringIO())
    handler.addFilter(logs.ContextFilter())
    handler.setFormatter(logs.formatter("json", "executor"))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    with logs.bound("e" * 32, "step"):
        began = time.perf_counter()
        for n in range(steps):
            logger.debug("http attempt %d: %s", n, "step.succeeded")
        line = (time.perf_counter() - began) / steps
    handler.setFormatter(logs.formatter("text", "executor"))
    with logs.bound("e" * 32, "step"):
        began = time.perf_counter()
        for n in range(steps):
            logger.debug("http attempt %d: %s", n, "step.succeeded")
        text_line = (time.perf_counter() - began) / steps

    print(f"steps: {steps}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"reference    {reference * 1e6:8.2f} µs per step (the same header dicts, no calls)")
    print(f"traces off   {off * 1e6:8.2f} µs per step (no opentelemetry module imported)")
    print(f"traces on    {on * 1e6:8.2f} µs per step (3 spans made, 4 injects; OTLP/HTTP export on its thread)")
    print(f"json line    {line * 1e6:8.2f} µs per log line (text: {text_line * 1e6:.2f} µs)")


if __name__ == "__main__":
    main()
