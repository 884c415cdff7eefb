"""Fixtures make `rb test` hermetic: stubbed raw results for steps with external effects."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from rb_common.errors import FixtureError
from rb_common.step_specs import SPECS
from rb_engine.coordinator import RunStep
from rb_engine.runner import StepExecutor
from rb_engine.steps.base import StepContext, StepFailed

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
    # `<step id>` of a wait_for_event step: the data of the event it receives once it waits.
    events: dict[str, Any] = {}
    expect: Expectations | None = None

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

    def __init__(self, inner: StepExecutor, fixture: Fixture, *, live: bool = False) -> None:
        self.inner = inner
        self.fixture = fixture
        self.live = live

    async def execute(self, command: RunStep, inputs: Any, ctx: StepContext) -> Any:
        spec = SPECS.get(command.step_type)
        external = spec.external if spec else True
        stub = self.fixture.stub_for(command.step_id, command.phase, command.attempt)
        if stub is None and (self.live or not external):
            return await self.inner.execute(command, inputs, ctx)
        if stub is None:
            key = command.step_id if command.phase == "main" else f"{command.step_id}.{command.phase}"
            raise StepFailed(
                f"no fixture stub for external step '{key}' (type {command.step_type}): "
                f"add steps.{key} to the fixture, or run with --live",
                retryable=False,
            )
        ctx.meta.update(stub.meta)
        if stub.error is not None:
            raise StepFailed(stub.error, retryable=stub.retryable)
        return stub.result
