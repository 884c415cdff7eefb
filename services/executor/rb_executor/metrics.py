"""The executor's metrics (coordinator and workers): executions started and finished, decision
latency, step attempt durations by type, the task queue's depth and wait, redeliveries."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from nats.aio.msg import Msg

from rb_common.events import TERMINAL_EVENTS, Event, EventType
from rb_common.metrics import DECISION_BUCKETS, REDELIVERIES, STEP_BUCKETS, Counter, Gauge, Histogram

EXECUTIONS_STARTED = Counter(
    "rb_executions_started_total", "Executions the coordinator started, by runbook.", ["runbook"]
)
EXECUTIONS_FINISHED = Counter(
    "rb_executions_finished_total",
    "Executions that reached a terminal status, by runbook and status.",
    ["runbook", "status"],
)
DECISION_SECONDS = Histogram(
    "rb_coordinator_decision_seconds",
    "Time the coordinator takes to turn one report into events and decisions (applier + decide).",
    buckets=DECISION_BUCKETS,
)
STEP_SECONDS = Histogram(
    "rb_step_duration_seconds",
    "Step attempts run by workers, by step type and outcome (succeeded | failed).",
    ["type", "outcome"],
    buckets=STEP_BUCKETS,
)
QUEUE_DEPTH = Gauge(
    "rb_task_queue_depth",
    "Step tasks waiting in the task queue after the last one handed to this worker, by step type.",
    ["type"],
)
QUEUE_WAIT = Histogram(
    "rb_task_queue_wait_seconds",
    "From a step task's publication to a worker taking it, by step type.",
    ["type"],
    buckets=STEP_BUCKETS,
)

_FINISHED_STATUS = {
    EventType.EXECUTION_SUCCEEDED: "SUCCEEDED",
    EventType.EXECUTION_FAILED: "FAILED",
    EventType.EXECUTION_ABORTED: "ABORTED",
    EventType.EXECUTION_CANCELLED: "CANCELLED",
}


def recorded(runbook_id: str, events: Iterable[Event]) -> None:
    """Count the executions started and finished among events the coordinator just stored."""
    for event in events:
        if event.type == EventType.EXECUTION_STARTED:
            EXECUTIONS_STARTED.labels(runbook_id).inc()
        elif event.type in TERMINAL_EVENTS:
            EXECUTIONS_FINISHED.labels(runbook_id, _FINISHED_STATUS[event.type]).inc()


def task_taken(msg: Msg, step_type: str) -> None:
    """A worker took a task: the queue behind it, how long it waited, whether it came again."""
    try:
        metadata = msg.metadata
    except Exception:  # not a JetStream message (tests)
        return
    pending = getattr(metadata, "num_pending", None)  # metrics never fail a handler
    if pending is not None:
        QUEUE_DEPTH.labels(step_type).set(pending)
    stored = getattr(metadata, "timestamp", None)
    if isinstance(stored, datetime):
        waited = (datetime.now(UTC) - stored).total_seconds()
        QUEUE_WAIT.labels(step_type).observe(max(waited, 0.0))
    if (getattr(metadata, "num_delivered", None) or 1) > 1:
        REDELIVERIES.labels(getattr(metadata, "consumer", None) or "tasks").inc()


def step_finished(step_type: str, outcome: str, seconds: float) -> None:
    STEP_SECONDS.labels(step_type, outcome).observe(seconds)
