"""Prometheus metrics, shared helpers: every service defines its own metrics (`<service>/metrics.py`)
in the process-wide `prometheus_client` registry, and exposes them all with `exposition()` (the API
on `/metrics`, the other services next to their health probes on `RB_HEALTH_ADDR`).

Naming follows Prometheus: `rb_` prefix, base units (`_seconds`), `_total` for counters; labels
are bounded sets (runbook ids, step types, statuses), never execution ids or free text.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram, generate_latest

__all__ = [
    "CONTENT_TYPE",
    "DECISION_BUCKETS",
    "REDELIVERIES",
    "STEP_BUCKETS",
    "Counter",
    "Gauge",
    "Histogram",
    "exposition",
    "timed",
]

CONTENT_TYPE = CONTENT_TYPE_LATEST
# Step attempts: a no-op transform (~1 ms) to an hour-long shell step.
STEP_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
# In-process work (a coordinator decision, a recorder lag): microseconds to seconds.
DECISION_BUCKETS = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 2.5, 10)


# Shared by every service that consumes JetStream (one registry per process, so defined once).
REDELIVERIES = Counter(
    "rb_redeliveries_total",
    "Messages JetStream delivered again (not acknowledged in time, or handed back), by consumer.",
    ["consumer"],
)


def exposition() -> bytes:
    """Every metric of this process in the Prometheus text format."""
    return generate_latest(REGISTRY)


@contextmanager
def timed(histogram: Histogram) -> Iterator[None]:
    """Observe the seconds the block takes (also when it raises)."""
    started = time.perf_counter()
    try:
        yield
    finally:
        histogram.observe(time.perf_counter() - started)
