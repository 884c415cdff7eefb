"""Messages services exchange besides events: triggers, step tasks, step outcomes, control."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def encode(self) -> bytes:
        return self.model_dump_json().encode()


class TriggerRequest(_Message):
    """Start an execution: the data of its execution.requested event, decided by the sender."""

    execution_id: str
    actor: str
    data: dict[str, Any]


class StepTask(_Message):
    """One attempt of one step for a worker; `step` is the step.scheduled event data."""

    execution_id: str
    step: dict[str, Any]
    files: dict[str, str] = {}
    outputs: dict[str, Any] = {}  # the step's output specs: the worker extracts them
    # The expression context (without secrets), only when inputs still hold `${secrets...}`.
    context: dict[str, Any] | None = None
    # `runbook` steps only: the execution's sub-runbook depth (for the cap) and its requester
    # (the child's), from the execution's trigger.
    depth: int = 0
    requester: str | None = None


class StepOutcome(_Message):
    """What a worker reports: step.started, step.succeeded or step.failed, for the coordinator
    to record."""

    execution_id: str
    type: str
    data: dict[str, Any]


class TimerDue(_Message):
    """A timer the coordinator started (timer.started): redelivered, with a delay, until its
    time has come; then the coordinator records timer.fired."""

    execution_id: str
    timer_id: str
    fire_at: str  # ISO time


class ControlCommand(_Message):
    """An operator's request: execution.cancel_requested | execution.paused | execution.resumed."""

    execution_id: str
    type: str
    actor: str
    data: dict[str, Any] = {}


class AlertEvent(_Message):
    """One alert (or webhook event) from an alerting system, normalised; published by the API
    to `rb.alert.<source>` and matched to runbooks asynchronously by the trigger router."""

    source: str  # alertmanager | grafana | pagerduty | cloudevents | webhook
    dedupe_id: str  # fingerprint+startsAt, PagerDuty event id, CloudEvents source+id, header id
    status: str = "firing"  # firing | resolved
    name: str | None = None  # alertname, PagerDuty incident title, CloudEvents type
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}
    starts_at: str | None = None
    group_key: str | None = None
    # Dedupe ids of every alert in the same notification, so a per-group trigger computes the same
    # execution id from whichever of the group's alerts it sees.
    group: list[str] = []
    runbook_id: str | None = None  # generic webhooks address one runbook
    payload: dict[str, Any] = {}  # the alert as received, for ${trigger.payload...}
    received_at: str | None = None
    # The registry's sequence (its KV bucket stream's last sequence) when the API received the
    # alert: the router matches against the registry as of then (rb_common.registry_events).
    registry_seq: int | None = None


class OutsideEvent(_Message):
    """An outside event for `wait_for_event` steps, on `rb.events.<subject>` (msg id = `id`):
    from POST /api/v1/events or any publisher on the bus."""

    subject: str
    correlation: Any = None
    data: Any = None
    id: str | None = None


class WaiterRegistration(_Message):
    """A `wait_for_event` step now waiting, on `rb.waiter.<execution>`: every executor indexes it
    by (subject, correlation) to route outside events to the execution."""

    execution_id: str
    step_id: str
    attempt: int
    subject: str
    correlation: Any = None
