"""Request counts and latency by route (prometheus_client, a registry per app). Several API
processes under one port (RB_API_PROCESSES) answer a scrape with the sum over all of them:
rb_common.metrics, multiprocess mode."""

from __future__ import annotations

from rb_common.metrics import CollectorRegistry, Counter, Gauge, Histogram, exposition

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """One per app (kept on app.state), fed by the metrics middleware. Its own registry, so that
    apps made side by side in one process (the tests) count apart; in multiprocess mode the
    values go to the process's files whatever the registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._requests = Counter(
            "rb_api_requests",
            "HTTP requests answered, by method, route and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self._latency = Histogram(
            "rb_api_request_duration_seconds",
            "Time to answer a request (streams: until closed).",
            ["method", "route"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self._refused = Counter(
            "rb_api_requests_refused",
            "Requests refused with 429 because the execution queue is at its bound, by route and reason.",
            ["route", "reason"],
            registry=self.registry,
        )
        self._in_flight = Gauge(
            "rb_api_requests_in_flight",
            "Requests being answered now.",
            registry=self.registry,
            multiprocess_mode="livesum",  # the processes alive now, added up
        )

    def started(self) -> None:
        self._in_flight.inc()

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self._in_flight.dec()
        self._requests.labels(method, route, str(status)).inc()
        self._latency.labels(method, route).observe(seconds)

    def refused(self, route: str, reason: str) -> None:
        """A request turned away by backpressure (the execute route's 429, rb_api.backpressure)."""
        self._refused.labels(route, reason).inc()

    def render(self) -> bytes:
        """These metrics and the process-wide ones (rb_common.metrics), in the text format."""
        return exposition(self.registry)
