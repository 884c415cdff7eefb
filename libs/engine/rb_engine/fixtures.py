"""Fixtures make `rb test` hermetic: stubbed raw results for steps with external effects."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from rb_common.errors import FixtureError
from rb_common.payloads import ApprovalDecided, ApprovalRequested
from rb_common.step_specs import SPECS
from rb_engine.child_runs import ChildOutcome, failure_message, raw_result
from rb_engine.coordinator import RunStep
from rb_engine.runner import StepExecutor
from rb_engine.steps.ai import structured_answer
from rb_engine.steps.base import StepContext, StepFailed
from rb_engine.steps.sub_runbook import child_request
from rb_engine.visual import BaselineSource

DEFAULT_CLOCK = "2025-01-01T00:00:00Z"


class StepStub(BaseModel):
    model_config = ConfigDict(extra="forbid")

    result: Any = None
    error: str | None = None
    retryable: bool = True
    meta: dict[str, Any] = {}

    @model_validator(mode="before")
    @classmethod
    def _one_of(cls, value: Any) -> Any:
        if isinstance(value, dict) and "result" not in value and "error" not in value:
            raise ValueError("a step stub has 'result' or 'error'")
        return value


class ApprovalScript(BaseModel):
    """How an approval step is decided in `rb test`: `approve: alice` (or a list of names),
    `reject: bob`, or `timeout: true` (nobody decides; its timer fires on the virtual clock)."""

    model_config = ConfigDict(extra="forbid")

    approve: str | list[str] | None = None
    reject: str | None = None
    comment: str | None = None
    timeout: bool = False

    @model_validator(mode="after")
    def _one_of(self) -> ApprovalScript:
        chosen = [self.approve is not None, self.reject is not None, self.timeout]
        if sum(chosen) != 1:
            raise ValueError("an approval script has one of 'approve', 'reject' or 'timeout: true'")
        return self

    def decisions(self, request: ApprovalRequested) -> list[ApprovalDecided]:
        if self.reject is not None:
            return [self._decision(request, "reject", self.reject)]
        names = [self.approve] if isinstance(self.approve, str) else list(self.approve or [])
        return [self._decision(request, "approve", name) for name in names]

    def _decision(self, request: ApprovalRequested, decision: str, actor: str) -> ApprovalDecided:
        return ApprovalDecided(
            step_id=request.step_id,
            approval_id=request.approval_id,
            decision=decision,
            actor=actor,
            comment=self.comment,
            via="fixture",
        )


class ChildStub(BaseModel):
    """A scripted child run of a `runbook` step: how it ended and its steps' outputs."""

    model_config = ConfigDict(extra="forbid")

    status: Literal["succeeded", "failed", "aborted", "cancelled"] = "succeeded"
    outputs: dict[str, dict[str, Any]] = {}  # by the child's step id
    reason: str | None = None
    execution_id: str | None = None  # default: derived from the step's attempt, as in a real run


class AiStub(BaseModel):
    """A scripted answer of an `ai` step: its text, or its JSON (validated against the step's
    schema like a real answer), or an error."""

    model_config = ConfigDict(extra="forbid")

    text: str | None = None
    json_: Any = Field(default=None, alias="json")
    error: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _one_of(cls, value: Any) -> Any:
        if isinstance(value, dict) and not {"text", "json", "error"} & set(value):
            raise ValueError("an ai stub has 'text', 'json' or 'error'")
        return value


class StepExpectation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: str | None = None
    attempts: int | None = None
    outputs: dict[str, Any] | None = None
    error_contains: str | None = None
    rollback: str | None = None  # status of the step's compensation


class Expectations(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: str = "SUCCEEDED"
    assumptions: dict[str, bool] = {}
    steps: dict[str, StepExpectation | str] = {}
    kpis: dict[str, bool] = {}
    reason_contains: str | None = None


class ServePages(BaseModel):
    """A directory `rb test` serves on loopback for the run (ui_screenshot's page); its base
    URL (`http://127.0.0.1:<port>`) becomes the parameter `param`."""

    model_config = ConfigDict(extra="forbid")

    dir: str  # relative to the fixture file
    param: str = "base_url"


class Fixture(BaseModel):
    model_config = ConfigDict(extra="forbid")

    params: dict[str, Any] = {}
    env: dict[str, str] = {}
    secrets: dict[str, str] = {}
    assumptions: dict[str, Any] = {}
    trigger: dict[str, Any] = {}
    clock: datetime = datetime.fromisoformat(DEFAULT_CLOCK)
    # `<step id>` stubs the step, `<step id>.rollback` its compensation.
    steps: dict[str, StepStub | list[StepStub]] = {}
    # `<step id>` of an approval step: who decides it (approve / reject / timeout).
    approvals: dict[str, ApprovalScript] = {}
    # Child runs of `runbook` steps and answers of `ai` steps, by step id (`steps` stubs them
    # too, with their raw results).
    children: dict[str, ChildStub] = {}
    ai: dict[str, AiStub] = {}
    # `<step id>` of a wait_for_event step: the data of the event it receives once it waits.
    events: dict[str, Any] = {}
    expect: Expectations | None = None
    serve: ServePages | None = None
    # Hosts and networks added to RB_EGRESS_ALLOW for this run (the served page's 127.0.0.1).
    egress_allow: list[str] = []

    def decide_approval(self, request: ApprovalRequested) -> list[ApprovalDecided]:
        """The scripted decisions on an approval; none (it waits for its timeout) if unscripted."""
        script = self.approvals.get(request.step_id)
        return script.decisions(request) if script is not None else []

    def stub_for(self, step_id: str, phase: str, attempt: int) -> StepStub | None:
        key = step_id if phase == "main" else f"{step_id}.{phase}"
        stub = self.steps.get(key)
        if isinstance(stub, list):
            return stub[min(attempt, len(stub)) - 1] if stub else None
        return stub


def load_fixture(path: str | Path) -> Fixture:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise FixtureError(f"{p}: cannot read fixture: {exc.strerror or exc}") from None
    try:
        data = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise FixtureError(f"{p}: invalid {'JSON' if p.suffix == '.json' else 'YAML'}: {exc}") from None
    try:
        return Fixture.model_validate(data or {})
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err["loc"]) or "(document)"
        raise FixtureError(f"{p}: {where}: {err['msg']}") from None


class FixtureExecutor:
    """Pure step types run for real; external ones return their stubs, attempt by attempt."""

    def __init__(
        self,
        inner: StepExecutor,
        fixture: Fixture,
        *,
        live: bool = False,
        baselines: BaselineSource | None = None,
    ) -> None:
        self.inner = inner
        self.fixture = fixture
        self.live = live
        self.baselines = baselines  # ui_screenshot's, under `rb test`

    async def execute(self, command: RunStep, inputs: Any, ctx: StepContext) -> Any:
        spec = SPECS.get(command.step_type)
        external = spec.external if spec else True
        stub = self.fixture.stub_for(command.step_id, command.phase, command.attempt)
        if stub is None and command.phase == "main":
            scripted = scripted_child_or_answer(self.fixture, command, inputs, ctx)
            if scripted is not NOT_SCRIPTED:
                return scripted
        if stub is None and (self.live or not external or (spec is not None and spec.runs_in_tests)):
            ctx.baselines = self.baselines
            return await self.inner.execute(command, inputs, ctx)
        if stub is None:
            key = command.step_id if command.phase == "main" else f"{command.step_id}.{command.phase}"
            also = {"runbook": f" (or children.{key})", "ai": f" (or ai.{key})"}.get(command.step_type, "")
            raise StepFailed(
                f"no fixture stub for external step '{key}' (type {command.step_type}): "
                f"add steps.{key}{also} to the fixture, or run with --live",
                retryable=False,
            )
        ctx.meta.update(stub.meta)
        if stub.error is not None:
            raise StepFailed(stub.error, retryable=stub.retryable)
        return stub.result


NOT_SCRIPTED: Any = object()


def scripted_child_or_answer(fixture: Fixture, command: RunStep, inputs: Any, ctx: StepContext) -> Any:
    """The raw result of a `runbook` step from `children`, or of an `ai` step from `ai`, as the
    real step would make it (depth cap and schema checks included); NOT_SCRIPTED otherwise."""
    if command.step_type == "runbook" and command.step_id in fixture.children:
        child = fixture.children[command.step_id]
        request = child_request(inputs, ctx, actor=ctx.requester or f"runbook:{ctx.execution_id}")
        ctx.meta["child_execution_id"] = child.execution_id or request.execution_id
        outcome = ChildOutcome(
            execution_id=child.execution_id or request.execution_id,
            status=child.status.upper(),
            reason=child.reason,
            outputs=child.outputs,
        )
        if not outcome.succeeded:
            raise StepFailed(failure_message(request.runbook_id, outcome), retryable=False)
        return raw_result(request.runbook_id, outcome)
    if command.step_type == "ai" and command.step_id in fixture.ai:
        answer = fixture.ai[command.step_id]
        if answer.error is not None:
            raise StepFailed(answer.error, retryable=False)
        text = answer.text if answer.text is not None else json.dumps(answer.json_)
        result: dict[str, Any] = {"text": text, "model": inputs.get("model") or "fixture"}
        if inputs.get("schema") is not None:
            result["json"] = structured_answer(text, inputs["schema"])
        result["raw"] = None  # no endpoint was asked
        return result
    return NOT_SCRIPTED
