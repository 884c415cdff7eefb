"""The recorder's metrics: events projected (by type and result), how far behind the executions
they are (recorder lag), the backlog on its consumer, redeliveries."""

from __future__ import annotations

from datetime import UTC, datetime

from nats.aio.msg import Msg

from rb_common.events import Event
from rb_common.metrics import DECISION_BUCKETS, REDELIVERIES, Counter, Gauge, Histogram

EVENTS = Counter(
    "rb_recorder_events_total",
    "Execution events the recorder handled, by event type and result (applied, duplicate, ...).",
    ["type", "result"],
)
LAG = Histogram(
    "rb_recorder_lag_seconds",
    "From an event's time (when the executor recorded it) to its projection into the database.",
    buckets=DECISION_BUCKETS,
)
PENDING = Gauge("rb_recorder_pending_events", "Events on the recorder's consumer not yet delivered to it.")


def projected(msg: Msg, event: Event, result: str) -> None:
    EVENTS.labels(event.type.value, result).inc()
    LAG.observe(max((datetime.now(UTC) - event.time).total_seconds(), 0.0))
    try:
        metadata = msg.metadata
    except Exception:  # not a JetStream message (tests)
        return
    pending = getattr(metadata, "num_pending", None)  # metrics never fail a handler
    if pending is not None:
        PENDING.set(pending)
    if (getattr(metadata, "num_delivered", None) or 1) > 1:
        REDELIVERIES.labels(getattr(metadata, "consumer", None) or "recorder").inc()
