"""The OpenTelemetry SDK behind `rb_common.tracing`: imported only when an OTLP endpoint is set.

One tracer provider per process (service.name `rb-<service>`, or OTEL_SERVICE_NAME), a batch
processor and the OTLP/HTTP (protobuf) exporter to `<endpoint>/v1/traces`; the exporter reads
the standard OTEL_EXPORTER_OTLP_HEADERS / _TIMEOUT / _CERTIFICATE variables itself, the batch
processor OTEL_BSP_*. The context travels as W3C Trace Context.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

KINDS = {
    "internal": SpanKind.INTERNAL,
    "server": SpanKind.SERVER,
    "client": SpanKind.CLIENT,
    "producer": SpanKind.PRODUCER,
    "consumer": SpanKind.CONSUMER,
}


def traces_url(endpoint: str) -> str:
    """OTEL_EXPORTER_OTLP_ENDPOINT is the collector's base URL; traces go to /v1/traces."""
    base = endpoint.rstrip("/")
    return base if base.endswith("/v1/traces") else f"{base}/v1/traces"


class Spans:
    def __init__(self, endpoint: str, service: str) -> None:
        resource = Resource.create({SERVICE_NAME: os.environ.get("OTEL_SERVICE_NAME") or service})
        self.provider = TracerProvider(resource=resource)
        self.provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=traces_url(endpoint))))
        self.tracer = self.provider.get_tracer("rb")
        self.propagator = TraceContextTextMapPropagator()

    def shutdown(self) -> None:
        self.provider.shutdown()  # flushes the batch processor

    def _parent(self, carrier: Mapping[str, str] | None) -> otel_context.Context | None:
        if not carrier:
            return None  # the current context
        extracted = self.propagator.extract(dict(carrier))
        # A carrier without a trace context leaves the current span the parent.
        if not trace.get_current_span(extracted).get_span_context().is_valid:
            return None
        return extracted

    @contextlib.contextmanager
    def span(
        self,
        name: str,
        parent: Mapping[str, str] | None,
        kind: str,
        attributes: Mapping[str, Any] | None,
    ) -> Iterator[None]:
        with self.tracer.start_as_current_span(
            name, context=self._parent(parent), kind=KINDS[kind], attributes=dict(attributes or {})
        ):
            yield

    def start(
        self,
        name: str,
        parent: Mapping[str, str] | None,
        kind: str,
        attributes: Mapping[str, Any] | None,
    ) -> trace.Span:
        return self.tracer.start_span(
            name, context=self._parent(parent), kind=KINDS[kind], attributes=dict(attributes or {})
        )

    def end(self, span: trace.Span, error: str | None, attributes: Mapping[str, Any] | None) -> None:
        if attributes:
            span.set_attributes(dict(attributes))
        if error is not None:
            span.set_status(Status(StatusCode.ERROR, error))
        span.end()

    @contextlib.contextmanager
    def within(self, span: trace.Span | None, carrier: Mapping[str, str] | None) -> Iterator[None]:
        if span is not None:
            ctx = trace.set_span_in_context(span)
        else:
            ctx = self._parent(carrier) or otel_context.get_current()
        token = otel_context.attach(ctx)
        try:
            yield
        finally:
            otel_context.detach(token)

    def failed(self, description: str) -> None:
        trace.get_current_span().set_status(Status(StatusCode.ERROR, description))

    def inject(self, headers: MutableMapping[str, str]) -> None:
        self.propagator.inject(headers)

    def current_ids(self) -> tuple[str, str] | None:
        span_context = trace.get_current_span().get_span_context()
        if not span_context.is_valid:
            return None
        return f"{span_context.trace_id:032x}", f"{span_context.span_id:016x}"
