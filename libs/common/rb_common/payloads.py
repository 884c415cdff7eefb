"""One pydantic model per event type: the typed `data` of an `Event`.

The envelope keeps `data` as a plain dict on the wire (its bytes and the hash chain are what was
recorded); `Event.payload` is the typed view of it, parsed once per event and cached, and a
producer that builds a payload writes `payload.dump()` as the data. `Payload` is the union of the
models, discriminated by the envelope's `type`: `PAYLOADS[type]` is the model of each type.

Shapes on the wire:

- A key the producer did not write stays absent: `dump()` gives exactly the keys that were set
  (given to the constructor or present in the parsed data), in the order the fields are declared
  below, which is the order the producers write them. A default only serves readers: a
  `step.started` without `phase` reads as phase "main" and is still written without it.
- `extra="allow"`: a key this version does not know (from a newer writer, or an older one
  before a field was dropped) is kept, readable as an attribute and written back by `dump()`,
  so no recording ever fails to parse for carrying more than the model names.
- Values nested inside the data (a runbook definition, a step's inputs and raw result, KPI
  results, triggers) stay plain JSON values: they are the runbook's own shapes, not events'.
- Times inside data are the ISO strings as recorded (`not_before`, `started_at`); the
  `*_time` helpers parse them.

Changing a shape means a new `SCHEMA_VERSION` and an upcaster (rb_common.upcast), so recorded
streams keep folding: see docs/architecture.md, "Events".
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict

from rb_common.events import EventType


class EventPayload(BaseModel):
    """The data of one event type. `TYPE` names it; `dump()` is its wire form."""

    model_config = ConfigDict(extra="allow", frozen=True)

    TYPE: ClassVar[EventType]

    def dump(self) -> dict[str, Any]:
        """The event's `data`: the keys that were set, in declaration order, then any extra
        keys in the order they came. Values are the payload's own (not copied)."""
        fields_set = self.__pydantic_fields_set__
        out = {k: v for k, v in self.__dict__.items() if k in fields_set}
        extra = self.__pydantic_extra__
        if extra:
            out.update(extra)
        return out


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


# -- the execution ----------------------------------------------------------------------------


class ExecutionRequested(EventPayload):
    """What to run and why: built by rb_common.snapshot.requested_data, the one builder."""

    TYPE = EventType.EXECUTION_REQUESTED
    runbook: dict[str, Any]  # the definition's snapshot, without its files
    params: dict[str, Any] = {}
    env: dict[str, Any] = {}
    trigger: dict[str, Any] = {}
    facts: dict[str, Any] = {}
    actor: str | None = None
    legal_basis: str | None = None
    concurrency: int | None = None
    files: dict[str, str] | None = None
    # A sub-runbook's run (the `runbook` step): its parent `{execution_id, step_id}` and its
    # depth (1 for a child of a top-level run); absent for a top-level run.
    parent: dict[str, Any] | None = None
    depth: int | None = None
    waits: str | None = None  # "timers": `wait` steps are the coordinator's timers (else workers')
    # "together": a wind-down skips the pending steps in one `steps.skipped` (else one
    # `step.skipped` each, as recordings without it did and replay keeps deciding them).
    wind_down: str | None = None


class ExecutionStarted(EventPayload):
    TYPE = EventType.EXECUTION_STARTED
    runbook_id: str
    version: str


class ExecutionQueued(EventPayload):
    """The executor's admission held the run back (a fact, not decide()'s): a limit on running
    executions is reached, the global one (`RB_MAX_RUNNING_EXECUTIONS`) or the runbook's
    `concurrency.limit`. It stays QUEUED until `execution.dequeued`."""

    TYPE = EventType.EXECUTION_QUEUED
    reason: str
    limit: str | None = None  # "global" | "runbook"


class ExecutionDequeued(EventPayload):
    """A slot freed and the queued run may start (a fact): decide() then records
    `execution.started`."""

    TYPE = EventType.EXECUTION_DEQUEUED


class AssumptionChecked(EventPayload):
    TYPE = EventType.ASSUMPTION_CHECKED
    name: str
    expected: Any = None
    actual: Any = None
    ok: bool
    error: str | None = None


class _Control(EventPayload):
    requested_via: str | None = None  # "api"
    reason: str | None = None


class ExecutionPaused(_Control):
    TYPE = EventType.EXECUTION_PAUSED


class ExecutionResumed(_Control):
    TYPE = EventType.EXECUTION_RESUMED


class ExecutionCancelRequested(_Control):
    TYPE = EventType.EXECUTION_CANCEL_REQUESTED


# -- steps ------------------------------------------------------------------------------------


class _StepAttempt(EventPayload):
    step_id: str
    attempt: int
    phase: str = "main"  # main | rollback

    @property
    def rollback(self) -> bool:
        return self.phase == "rollback"


class StepScheduled(EventPayload):
    """One attempt to run, as decided: the worker's task carries this data as `step`."""

    TYPE = EventType.STEP_SCHEDULED
    step_id: str
    step_type: str
    attempt: int
    phase: str = "main"  # main | rollback
    inputs: Any = None  # rendered, `${secrets...}` left as written
    timeout: float
    idempotency_key: str
    not_before: str | None = None  # ISO time; retries wait until then

    @property
    def rollback(self) -> bool:
        return self.phase == "rollback"

    @property
    def not_before_time(self) -> datetime | None:
        return _time(self.not_before)


class StepStarted(_StepAttempt):
    TYPE = EventType.STEP_STARTED
    delivery: int = 1  # written from the second delivery of the attempt on


class StepSucceeded(_StepAttempt):
    TYPE = EventType.STEP_SUCCEEDED
    result: Any = None  # raw, secrets masked
    outputs: dict[str, Any] = {}
    digest: str | None = None  # sha256 of the canonical result
    meta: Any = None  # HTTP status and headers, exit code...
    started_at: str | None = None  # ISO; workers report it, the in-process runner does not
    delivery: int = 1
    stage: str | None = None  # "coordinator": a step the coordinator ran itself (branch, wait...)

    @property
    def started_time(self) -> datetime | None:
        return _time(self.started_at)


class StepFailed(_StepAttempt):
    """A failed attempt: reported by a worker (with `retryable`, then the coordinator's
    `will_retry` / `retry_delay`), or recorded by the coordinator itself: inputs that did not
    render (`stage: "inputs"`), a cancellation (`cancelled`), a lost task (`lost`)."""

    TYPE = EventType.STEP_FAILED
    error: str | None = None
    cancelled: bool = False
    lost: bool = False
    retryable: bool | None = None
    timed_out: bool = False
    started_at: str | None = None
    delivery: int = 1
    will_retry: bool | None = None  # None: not decided (a rollback attempt)
    detail: Any = None  # what the plugin adds about the failure (a screenshot's artifact refs)
    retry_delay: float | None = None
    stage: str | None = None  # "inputs"; "coordinator": decided by a step the coordinator runs

    @property
    def started_time(self) -> datetime | None:
        return _time(self.started_at)


class StepSkipped(EventPayload):
    TYPE = EventType.STEP_SKIPPED
    step_id: str
    reason: str | None = None


class StepsSkipped(EventPayload):
    """The steps a wind-down (cancel, failure, timeout, unmet assumption) skips, in one event,
    in the plan's order: a cancel of a 10,000-step run records one event, not thousands.
    Decided only for executions requested with `wind_down: together`."""

    TYPE = EventType.STEPS_SKIPPED
    step_ids: list[str]
    reason: str | None = None


class RollbackStarted(EventPayload):
    TYPE = EventType.ROLLBACK_STARTED
    failed_step: str
    compensate: list[str] = []  # step ids, in the order they are compensated


class KpiEvaluated(EventPayload):
    TYPE = EventType.KPI_EVALUATED
    kpis: dict[str, dict[str, Any]] = {}  # name -> {value, target, ok, error?}
    breached: list[str] = []


class ApprovalRequested(EventPayload):
    """An `approval` step is waiting for people (decided by rb_engine.coordinator.approvals):
    what the API, Slack and email show, and who may not decide (`requested_by`)."""

    TYPE = EventType.APPROVAL_REQUESTED
    step_id: str
    approval_id: str  # `<execution id>:<step id>`
    approvers: list[str] = []  # user names, or `role:<role>`
    min_approvals: int = 1
    prompt: str | None = None
    require_comment: bool = False
    timeout: float | None = None  # seconds
    timeout_at: str | None = None  # ISO
    timeout_action: str = "fail"  # fail | approve | skip
    requested_by: str | None = None  # the execution's requester: may not approve


class ApprovalDecided(EventPayload):
    """One person's decision on a pending approval (a fact, from the API, Slack, email or a
    fixture); the coordinator counts them."""

    TYPE = EventType.APPROVAL_DECIDED
    step_id: str
    approval_id: str
    decision: str  # approve | reject
    actor: str
    comment: str | None = None
    via: str | None = None  # api | slack | email | fixture


# -- notifications ------------------------------------------------------------------------------


class _Notification(EventPayload):
    """The notifier's record of one notification: (event_id, channel) is its identity."""

    event_id: str
    event_type: str | None = None
    channel: str  # slack:#x, email:..., webhook:...
    attempts: int | None = None
    ts: str | None = None
    error: str | None = None
    on: str | None = None
    slack_channel: str | None = None
    thread_ts: str | None = None
    note: str | None = None


class NotificationSent(_Notification):
    TYPE = EventType.NOTIFICATION_SENT
    # True when a restarted notifier found the message already out (Slack message metadata)
    # instead of sending it again.
    found: bool | None = None


class NotificationFailed(_Notification):
    TYPE = EventType.NOTIFICATION_FAILED
    # True: the channel refused it for good (Slack channel_not_found, SMTP 5xx); false: the
    # channel's deadline passed.
    permanent: bool | None = None


class NotificationSending(_Notification):
    """The intent, recorded before attempt `attempts` goes out: after a crash, a notifier that
    finds an intent without an outcome checks whether the message went out before sending."""

    TYPE = EventType.NOTIFICATION_SENDING
    at: str  # ISO time the attempt started
    deadline: str | None = None  # ISO time after which the notifier gives up


class NotificationRetrying(_Notification):
    """A failed attempt that will be retried, not before `retry_at`."""

    TYPE = EventType.NOTIFICATION_RETRYING
    retry_at: str  # ISO
    retry_after: float | None = None  # what the channel asked for (Slack's Retry-After)


# -- timers -----------------------------------------------------------------------------------


class TimerStarted(EventPayload):
    """A decision to be woken at `fire_at` (the runbook's `timeout`; approval timeouts, long
    waits): recorded, so it survives restarts, and fired by whoever drives the coordinator."""

    TYPE = EventType.TIMER_STARTED
    timer_id: str
    fire_at: str  # ISO time
    purpose: str | None = None

    @property
    def fire_time(self) -> datetime:
        return datetime.fromisoformat(self.fire_at)


class TimerFired(EventPayload):
    TYPE = EventType.TIMER_FIRED
    timer_id: str


# -- the end ----------------------------------------------------------------------------------


class _Terminal(EventPayload):
    reason: str | None = None


class ExecutionSucceeded(_Terminal):
    TYPE = EventType.EXECUTION_SUCCEEDED


class ExecutionFailed(_Terminal):
    TYPE = EventType.EXECUTION_FAILED
    failed_step: str | None = None
    rolled_back: list[str] | None = None
    rollback_failed: list[str] | None = None
    timed_out: bool = False  # the runbook's timeout passed (written only then)


class ExecutionAborted(_Terminal):
    TYPE = EventType.EXECUTION_ABORTED
    unmet: list[str] = []
    # The executor refused the start (a fact): the revision is not APPROVED, the runbook is at
    # its concurrency.limit with on_limit: reject, or the execution queue is full.
    refused: bool = False


class ExecutionCancelled(_Terminal):
    TYPE = EventType.EXECUTION_CANCELLED
    # A cancel that came while a failure was being compensated: what the compensation did.
    rolled_back: list[str] | None = None
    rollback_failed: list[str] | None = None


# -- flow control: steps the coordinator runs itself, and retrying a failed step ----------------


class StepWaiting(EventPayload):
    """The coordinator started a step it runs itself (`wait`, `wait_for_event`, `for_each`):
    no worker holds it; timers, received events or its iterations finish it."""

    TYPE = EventType.STEP_WAITING
    step_id: str
    attempt: int = 1
    inputs: Any = None  # rendered (a wait's `until` as written)
    items: list[Any] | None = None  # for_each: the items, rendered once
    subject: str | None = None  # wait_for_event
    correlation: Any = None  # wait_for_event: rendered at start


class EventReceived(EventPayload):
    """An outside event matched a waiting `wait_for_event` step (the API's POST /api/v1/events
    or `<ns>.events.<subject>` on the bus, matched by the executor; a fixture in `rb test`)."""

    TYPE = EventType.EVENT_RECEIVED
    step_id: str
    attempt: int = 1
    subject: str
    correlation: Any = None
    data: Any = None
    event_id: str | None = None


class StepRetryRequested(EventPayload):
    """An operator asked to run a failed step of a finished execution again: it and its
    dependants start over, the rest keep their outputs; the execution runs again."""

    TYPE = EventType.STEP_RETRY_REQUESTED
    step_id: str
    requested_via: str | None = None
    reason: str | None = None


Payload = (
    ExecutionRequested
    | ExecutionStarted
    | ExecutionQueued
    | ExecutionDequeued
    | AssumptionChecked
    | StepScheduled
    | StepStarted
    | StepSucceeded
    | StepFailed
    | StepSkipped
    | StepsSkipped
    | ApprovalRequested
    | ApprovalDecided
    | ExecutionPaused
    | ExecutionResumed
    | ExecutionCancelRequested
    | RollbackStarted
    | KpiEvaluated
    | NotificationSending
    | NotificationRetrying
    | NotificationSent
    | NotificationFailed
    | ExecutionSucceeded
    | ExecutionFailed
    | ExecutionAborted
    | ExecutionCancelled
    | TimerStarted
    | TimerFired
    | StepWaiting
    | EventReceived
    | StepRetryRequested
)
TerminalPayload = ExecutionSucceeded | ExecutionFailed | ExecutionAborted | ExecutionCancelled

PAYLOADS: dict[EventType, type[EventPayload]] = {model.TYPE: model for model in Payload.__args__}

P = TypeVar("P", bound=EventPayload)


def parse_payload(type_: EventType | str, data: dict[str, Any]) -> EventPayload:
    """The typed payload of `data` for event type `type_` (in the current schema version);
    KeyError for a type that is not an EventType."""
    return PAYLOADS[type_].model_validate(data)  # type: ignore[index]  # a StrEnum key: str works
