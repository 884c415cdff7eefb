"""Traces: the one place that sets up OpenTelemetry, and the small API the services use.

A trace follows one execution: the trigger (API or scheduler), the execution (the coordinator),
each step attempt (a worker) and what the attempt or the notifier calls outside (HTTP requests,
Slack, email, webhooks). The W3C `traceparent` travels in NATS message headers (see
docs/architecture.md, "Observability").

Without `OTEL_EXPORTER_OTLP_ENDPOINT` (Settings.otel_endpoint), `setup` does nothing and every
function here returns at its first line: no OpenTelemetry module is imported and no span object
is made. With it, `rb_common.tracing_sdk` (the SDK and its OTLP/HTTP exporter) is loaded once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, MutableMapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from rb_common.settings import Settings
    from rb_common.tracing_sdk import Spans

# Header names a trace context travels in (W3C Trace Context).
HEADERS = ("traceparent", "tracestate")

Carrier = Mapping[str, str]
Attributes = Mapping[str, str | int | float | bool]
H = TypeVar("H", bound=MutableMapping[str, str])

_spans: Spans | None = None
_NOTHING: AbstractContextManager[None] = contextlib.nullcontext()  # reusable: tracing off


def setup(settings: Settings, service: str) -> None:
    """Called by each service's composition root with its settings; once per process (a second
    call, e.g. services sharing a process in tests, keeps the first)."""
    global _spans
    if _spans is not None or not settings.otel_endpoint:
        return
    from rb_common.tracing_sdk import Spans

    _spans = Spans(settings.otel_endpoint, f"rb-{service}")


def shutdown() -> None:
    """Export what is buffered and stop (a service's end)."""
    global _spans
    if _spans is None:
        return
    spans, _spans = _spans, None
    spans.shutdown()


def enabled() -> bool:
    return _spans is not None


def span(
    name: str,
    *,
    parent: Carrier | None = None,
    kind: str = "internal",
    attributes: Attributes | None = None,
) -> AbstractContextManager[None]:
    """A span around the block, current inside it: the child of `parent` (a message's headers)
    if it carries a trace context, else of the current span. `kind`: internal, server, client,
    producer, consumer. An exception leaving the block marks the span as an error."""
    if _spans is None:
        return _NOTHING
    return _spans.span(name, parent, kind, attributes)


def start(
    name: str,
    *,
    parent: Carrier | None = None,
    kind: str = "internal",
    attributes: Attributes | None = None,
) -> Any:
    """A span that outlives the block that starts it (an execution): end it with `end`; None
    when tracing is off."""
    if _spans is None:
        return None
    return _spans.start(name, parent, kind, attributes)


def end(handle: Any, *, error: str | None = None, attributes: Attributes | None = None) -> None:
    if _spans is None or handle is None:
        return
    _spans.end(handle, error, attributes)


def within(handle: Any = None, *, carrier: Carrier | None = None) -> AbstractContextManager[None]:
    """Make a started span (or the context a carrier holds) current inside the block."""
    if _spans is None or (handle is None and not carrier):
        return _NOTHING
    return _spans.within(handle, carrier)


def inject(headers: H) -> H:
    """Add the current trace context to message (or HTTP) headers; returns `headers`."""
    if _spans is not None:
        _spans.inject(headers)
    return headers


def carried(headers: Carrier | None) -> dict[str, str]:
    """The trace context headers of a received message, to pass on as they are."""
    if _spans is None or not headers:
        return {}
    return {name: headers[name] for name in HEADERS if name in headers}


def current_ids() -> tuple[str, str] | None:
    """(trace id, span id) of the current span, hex, for log lines; None without one."""
    if _spans is None:
        return None
    return _spans.current_ids()


def failed(description: str) -> None:
    """Mark the current span as failed (an outcome that is not an exception)."""
    if _spans is not None:
        _spans.failed(description)
