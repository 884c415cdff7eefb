"""Prometheus metrics, shared helpers: every service defines its own metrics (`<service>/metrics.py`)
in the process-wide `prometheus_client` registry, and exposes them all with `exposition()` (the API
on `/metrics`, the other services next to their health probes on `RB_HEALTH_ADDR`).

Several processes of one service (the API under `rb up`, RB_API_PROCESSES) share their counts
through prometheus_client's multiprocess mode: with PROMETHEUS_MULTIPROC_DIR set before
prometheus_client is imported, every process writes its values to files there, and
`exposition()` answers with the sum over every process that wrote any (a dead process's counters
stay in the sum, as counters must; its live gauges go with `mark_process_dead`). That mode has no
per-process `process_*`/`python_*` metrics.

Naming follows Prometheus: `rb_` prefix, base units (`_seconds`), `_total` for counters; labels
are bounded sets (runbook ids, step types, statuses), never execution ids or free text.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)

__all__ = [
    "CONTENT_TYPE",
    "DECISION_BUCKETS",
    "MULTIPROC_ENV",
    "REDELIVERIES",
    "STEP_BUCKETS",
    "CollectorRegistry",
    "Counter",
    "Gauge",
    "Histogram",
    "exposition",
    "forget_process",
    "multiproc_dir",
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


# No `<name>_created` series beside each counter and histogram: Prometheus does not read them from
# the text format, they doubled the series, and multiprocess mode has none (one output either way).
disable_created_metrics()

# prometheus_client's own switch (read by it at import): where the processes write their values.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiproc_dir() -> str | None:
    """The directory this process's metrics go to, when several processes share them."""
    return os.environ.get(MULTIPROC_ENV) or None


def exposition(*registries: CollectorRegistry) -> bytes:
    """Every metric of this process (the process-wide registry and `registries`) in the
    Prometheus text format; in multiprocess mode, every metric of every process instead."""
    if multiproc_dir() is not None:
        shared = CollectorRegistry()
        multiprocess.MultiProcessCollector(shared)
        return generate_latest(shared)
    return b"".join(generate_latest(registry) for registry in (*registries, REGISTRY))


def forget_process(directory: Path, pid: int) -> None:
    """A process that wrote to `directory` is gone: its live gauges leave the sum (its counters
    and histograms stay in it)."""
    multiprocess.mark_process_dead(pid, str(directory))


@contextmanager
def timed(histogram: Histogram) -> Iterator[None]:
    """Observe the seconds the block takes (also when it raises)."""
    started = time.perf_counter()
    try:
        yield
    finally:
        histogram.observe(time.perf_counter() - started)
