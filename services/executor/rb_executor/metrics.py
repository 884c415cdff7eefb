"""The executor's metrics (coordinator and workers): executions started and finished, decision
latency, step attempt durations by type, the task queue's depth and wait, redeliveries, and
admission (rb_common.slots): executions running and queued, how long queued ones waited, and
starts refused."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from nats.aio.msg import Msg

from rb_common.events import TERMINAL_EVENTS, Event, EventType
from rb_common.metrics import DECISION_BUCKETS, REDELIVERIES, STEP_BUCKETS, Counter, Gauge, Histogram
from rb_common.slots import Table

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

ADMISSION_RUNNING = Gauge(
    "rb_admission_running_executions",
    "Executions holding a slot in the admission table (all executors), as this executor last read it.",
)
ADMISSION_QUEUED = Gauge(
    "rb_admission_queued_executions",
    "Executions waiting QUEUED for a slot (all executors), as this executor last read the table.",
)
ADMISSION_WAIT = Histogram(
    "rb_admission_queue_wait_seconds",
    "From execution.requested to execution.dequeued, for executions that waited QUEUED for a slot.",
    ["runbook"],
    buckets=STEP_BUCKETS,
)
ADMISSION_REFUSED = Counter(
    "rb_admission_refused_total",
    "Starts the executor refused (execution.aborted, refused), by runbook and reason: not_approved "
    "(the revision is not the APPROVED one), runbook_limit (concurrency on_limit: reject), "
    "queue_full (RB_MAX_QUEUED_EXECUTIONS wait already).",
    ["runbook", "reason"],
)

_FINISHED_STATUS = {
    EventType.EXECUTION_SUCCEEDED: "SUCCEEDED",
    EventType.EXECUTION_FAILED: "FAILED",
    EventType.EXECUTION_ABORTED: "ABORTED",
    EventType.EXECUTION_CANCELLED: "CANCELLED",
}


def recorded(runbook_id: str, events: Iterable[Event], requested_at: datetime | None = None) -> None:
    """Count the executions started and finished among events the coordinator just stored, and
    the wait of one that leaves the queue (`requested_at`: its execution.requested time)."""
    for event in events:
        if event.type == EventType.EXECUTION_STARTED:
            EXECUTIONS_STARTED.labels(runbook_id).inc()
        elif event.type in TERMINAL_EVENTS:
            EXECUTIONS_FINISHED.labels(runbook_id, _FINISHED_STATUS[event.type]).inc()
        elif event.type == EventType.EXECUTION_DEQUEUED and requested_at is not None:
            waited = (event.time - requested_at).total_seconds()
            ADMISSION_WAIT.labels(runbook_id).observe(max(waited, 0.0))


def admission_table(table: Table) -> None:
    """The slot table as this executor just read or wrote it."""
    ADMISSION_RUNNING.set(len(table.running))
    ADMISSION_QUEUED.set(len(table.queue))


def refused(runbook_id: str, reason: str) -> None:
    ADMISSION_REFUSED.labels(runbook_id, reason).inc()


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
