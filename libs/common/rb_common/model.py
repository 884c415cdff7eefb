"""The runbook format (DESIGN.md section 3) as pydantic models; unknown keys are errors."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from rb_common.durations import parse_duration

Duration = Annotated[float, BeforeValidator(parse_duration)]

ID_PATTERN = r"^[a-z0-9][a-z0-9-]*$"
TEAM_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:@/-]*$"
STEP_ID_PATTERN = r"^[A-Za-z_][A-Za-z0-9_-]*$"
_SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$")

OnFailure = Literal["abort", "continue", "rollback"]
NotifyEvent = Literal["started", "succeeded", "failed", "aborted", "cancelled", "approval_requested"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RetryPolicy(Strict):
    max_attempts: int = Field(default=1, ge=1, le=100)
    backoff: Literal["exponential", "linear", "fixed"] = "exponential"
    initial_delay: Duration = 1.0
    max_delay: Duration = 30.0
    jitter: bool = True

    def merged_over(self, base: RetryPolicy) -> RetryPolicy:
        """This policy's explicitly set fields layered over `base`."""
        return base.model_copy(update={k: getattr(self, k) for k in self.model_fields_set})


class Defaults(Strict):
    retry: RetryPolicy = RetryPolicy()
    timeout: Duration = 60.0
    concurrency: int = Field(default=8, ge=1, le=1000)


class ExecutionLimit(Strict):
    """The runbook's `concurrency`: at most `limit` of its executions run at once (in the
    services: the executor's admission); `on_limit` says what a start over it does: wait QUEUED
    (`queue`), be refused (`reject`, recorded), or cancel the oldest running one and wait for
    its slot (`cancel_oldest`)."""

    limit: int = Field(ge=1, le=10_000)
    on_limit: Literal["queue", "reject", "cancel_oldest"] = "queue"


class Rollback(Strict):
    type: str
    inputs: dict[str, Any] = {}
    timeout: Duration | None = None


class Step(Strict):
    id: str = Field(pattern=STEP_ID_PATTERN, max_length=100)
    type: str
    description: str = ""
    depends_on: list[str] = []
    inputs: dict[str, Any] = {}
    outputs: dict[str, Any] = {}
    when: str | bool | None = None
    on_failure: OnFailure = "abort"
    retry: RetryPolicy | None = None
    timeout: Duration | None = None
    rollback: Rollback | None = None

    @field_validator("on_failure", mode="before")
    @classmethod
    def _alias_on_failure(cls, value: object) -> object:
        return "continue" if value == "log_and_continue" else value

    @field_validator("depends_on", mode="before")
    @classmethod
    def _single_dependency(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value


class AlertMatch(Strict):
    source: Literal["alertmanager", "grafana", "pagerduty", "cloudevents", "webhook"]
    match: dict[str, str] = {}


class Trigger(Strict):
    cron: str | None = None
    timezone: str = "UTC"
    alert: AlertMatch | None = None
    params: dict[str, Any] = {}
    status: Literal["firing", "resolved"] = "firing"
    per: Literal["alert", "group"] = "alert"

    @model_validator(mode="after")
    def _one_kind(self) -> Trigger:
        if (self.cron is None) == (self.alert is None):
            raise ValueError("a trigger has exactly one of 'cron' or 'alert'")
        return self


class SlackTarget(Strict):
    channel: str


class EmailTarget(Strict):
    to: list[str]
    cc: list[str] = []


class WebhookTarget(Strict):
    url: str


class NotifyRule(Strict):
    on: list[NotifyEvent]
    slack: SlackTarget | None = None
    email: EmailTarget | None = None
    webhook: WebhookTarget | None = None

    @model_validator(mode="after")
    def _has_channel(self) -> NotifyRule:
        if not (self.slack or self.email or self.webhook):
            raise ValueError("a notify rule needs one of 'slack', 'email' or 'webhook'")
        return self


class Kpis(BaseModel):
    """Built-in targets plus custom KPIs (name -> expression), recorded at the end of a run."""

    model_config = ConfigDict(extra="allow", frozen=True)

    max_duration_seconds: float | None = Field(default=None, gt=0)
    min_success_rate: float | None = Field(default=None, ge=0, le=1)
    max_error_rate: float | None = Field(default=None, ge=0, le=1)

    @model_validator(mode="after")
    def _custom_are_expressions(self) -> Kpis:
        for name, value in (self.model_extra or {}).items():
            if not isinstance(value, str | int | float) or isinstance(value, bool):
                raise ValueError(f"custom KPI {name!r} must be an expression string or a number")
        return self

    @property
    def custom(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class Assumption(Strict):
    name: str
    expect: Any


_STEP_INDEX = "_rb_step_index"  # Runbook._step_index's entry in the instance __dict__


class Runbook(Strict):
    id: str = Field(pattern=ID_PATTERN, max_length=100)
    name: str
    version: str = "0.1.0"
    owner: str | None = None
    # Team scope: only members of this team (an API key's teams, an OIDC token's groups claim)
    # and admins see and run a registered runbook that names one.
    team: str | None = Field(default=None, pattern=TEAM_PATTERN, max_length=100)
    description: str = ""
    legal_basis: str | None = None
    tags: list[str] = []
    environment: Literal["development", "staging", "production"] = "development"
    assumptions: list[Assumption] = []
    parameters: dict[str, Any] | None = None
    kpis: Kpis = Kpis()
    defaults: Defaults = Defaults()
    # The whole execution's deadline, from its start: when it passes, running steps are
    # cancelled, pending ones skipped and the execution fails ("timed out").
    timeout: Duration | None = Field(default=None, gt=0)
    # At most this many executions of the runbook run at once (rb_executor admission).
    concurrency: ExecutionLimit | None = None
    triggers: list[Trigger] = []
    notify: list[NotifyRule] = []
    steps: list[Step] = Field(min_length=1)
    # The texts of the files the steps reference (schemas, GraphQL documents), by the name the
    # step uses. Registration fills it from the files sent with the runbook, so a registered
    # revision carries its files; a runbook file may also write them inline. Executions record
    # them as `execution.requested.files` (rb_common.snapshot), never from a worker's disk.
    files: dict[str, str] = {}

    @field_validator("version")
    @classmethod
    def _semver(cls, value: str) -> str:
        if not _SEMVER.match(value):
            raise ValueError(f"version {value!r} is not semver (e.g. 1.0.0)")
        return value

    @field_validator("assumptions", mode="before")
    @classmethod
    def _assumption_pairs(cls, value: object) -> object:
        # YAML writes assumptions as a list of one-key mappings or as one mapping.
        if isinstance(value, dict):
            return [{"name": k, "expect": v} for k, v in value.items()]
        if isinstance(value, list):
            out: list[object] = []
            for item in value:
                if isinstance(item, dict) and set(item) != {"name", "expect"}:
                    if len(item) != 1:
                        raise ValueError("each assumption is a single 'name: expectation' pair")
                    ((k, v),) = item.items()
                    out.append({"name": k, "expect": v})
                else:
                    out.append(item)
            return out
        return value

    def step(self, step_id: str) -> Step:
        index = self._step_index()
        found = index.get(step_id)
        if found is None:
            found = index[step_id] = self._iteration(step_id)
        return found

    def _step_index(self) -> dict[str, Step]:
        """Steps by id (and the for_each sub-steps asked for), built on first use: the
        coordinator looks a step up for every decision, and a linear search made a 10,000-step
        runbook quadratic. Kept in the instance's __dict__ beside the list it indexes, as
        functools.cached_property would keep it: not a field, so neither dumped nor compared,
        and rebuilt when a model_copy replaced `steps`."""
        cached = self.__dict__.get(_STEP_INDEX)
        if cached is not None and cached[0] is self.steps:
            return cached[1]
        index: dict[str, Step] = {}
        for step in self.steps:
            index.setdefault(step.id, step)  # the first of a repeated id, as a search finds it
        self.__dict__[_STEP_INDEX] = (self.steps, index)
        return index

    def _iteration(self, step_id: str) -> Step:
        """The sub-step `loop[3]` of a for_each step `loop`: its body (`inputs.step`), under
        that id, `on_failure: continue` (the for_each step decides what a failure means)."""
        parent_id, bracket, rest = step_id.partition("[")
        if not bracket or not rest.endswith("]") or not rest[:-1].isdigit():
            raise KeyError(step_id)
        parent = self._step_index().get(parent_id)
        body = parent.inputs.get("step") if parent is not None and parent.type == "for_each" else None
        if not isinstance(body, dict):
            raise KeyError(step_id)
        spec = {k: v for k, v in body.items() if k not in ("id", "depends_on", "rollback", "on_failure")}
        step = Step.model_validate({"id": parent_id, **spec})
        return step.model_copy(update={"id": step_id, "on_failure": "continue"})

    def retry_for(self, step: Step) -> RetryPolicy:
        return step.retry.merged_over(self.defaults.retry) if step.retry else self.defaults.retry

    def timeout_for(self, step: Step) -> float:
        return step.timeout if step.timeout is not None else self.defaults.timeout

    def snapshot(self) -> dict[str, Any]:
        """The JSON form recorded in `execution.requested`; `Runbook.model_validate` reads it back."""
        return self.model_dump(mode="json", exclude_unset=True)
