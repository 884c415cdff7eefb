"""`rb test`: run against a fixture and check assumptions, steps, KPIs and expectations."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from rb_common.errors import FixtureError
from rb_common.model import Runbook
from rb_common.statuses import StepStatus
from rb_engine.coordinator import ExecutionState
from rb_engine.fixtures import Expectations, StepExpectation
from rb_engine.result import canonical_result
from rb_engine.ui_testing import Screenshot


@dataclass(frozen=True)
class Check:
    ok: bool
    label: str
    detail: str = ""


@dataclass
class TestOutcome:
    name: str
    execution_id: str
    checks: list[Check] = field(default_factory=list)
    # For the reports (rb_engine.reports): the final state, screenshots taken, wall time.
    state: ExecutionState | None = None
    screenshots: list[Screenshot] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return all(c.ok for c in self.checks)


def check_execution(
    runbook: Runbook,
    state: ExecutionState,
    expect: Expectations | None,
    expected_output: tuple[str, Any] | None = None,
) -> list[Check]:
    expect = expect or Expectations()
    checks: list[Check] = []
    for a in runbook.assumptions:
        held = state.assumptions.get(a.name)
        want = expect.assumptions.get(a.name, True)
        label = f"assumption {a.name}" + ("" if held else " not met" if held is False else " not checked")
        detail = "" if held == want else f"expected {'met' if want else 'not met'}"
        checks.append(Check(held == want, label, detail))
    for sid in state.order:
        checks.append(_step_check(runbook, state, sid, expect.steps.get(sid)))
    recorded = (state.kpis or {}).get("kpis") or {}
    for name in sorted(set(expect.kpis) - set(recorded)):
        known = ", ".join(recorded) or "none"
        checks.append(Check(False, f"kpi {name}", f"no such KPI was recorded (recorded: {known})"))
    for name, kpi in recorded.items():
        if kpi.get("ok") is None and name not in expect.kpis:
            continue
        want = expect.kpis.get(name, True)
        value = kpi.get("value")
        shown = f"{value:.3g}" if isinstance(value, float) else json.dumps(value, default=str)
        target = f" (target {kpi['target']})" if kpi.get("target") is not None else ""
        detail = kpi.get("error", "") or (
            "" if kpi.get("ok") == want else f"expected {'met' if want else 'breached'}"
        )
        checks.append(Check(kpi.get("ok") == want, f"kpi {name} = {shown}{target}", detail))
    checks.append(
        Check(
            state.status == expect.status,
            f"execution {state.status.lower()}",
            ""
            if state.status == expect.status
            else f"expected {expect.status}; {state.reason or ''}".strip(),
        )
    )
    if expect.reason_contains is not None:
        ok = expect.reason_contains in (state.reason or "")
        checks.append(Check(ok, f"reason mentions {expect.reason_contains!r}", state.reason or ""))
    if expected_output is not None:
        name, wanted = expected_output
        diff = _first_difference(wanted, canonical_result(state))
        checks.append(Check(diff is None, f"result matches {name}", diff or ""))
    return checks


def _step_check(
    runbook: Runbook, state: ExecutionState, sid: str, expected: StepExpectation | str | None
) -> Check:
    s = state.steps[sid]
    label = f"step {sid}: {s.status.lower()}" + (f" after {s.attempt} attempts" if s.attempt > 1 else "")
    if s.rollback_status:
        label += f", compensation {s.rollback_status.lower()}"
    if isinstance(expected, str):
        expected = StepExpectation(status=expected)
    if expected is None:
        ok = s.status != StepStatus.FAILED
        return Check(ok, label, s.error or "" if not ok else s.skip_reason or "")
    problems = []
    if expected.status and expected.status.upper() != s.status:
        problems.append(f"expected {expected.status.upper()}")
    if expected.attempts is not None and expected.attempts != s.attempt:
        problems.append(f"expected {expected.attempts} attempts")
    for key, value in (expected.outputs or {}).items():
        if s.outputs.get(key) != value:
            problems.append(
                f"output {key} = {json.dumps(s.outputs.get(key), default=str)}, "
                f"expected {json.dumps(value, default=str)}"
            )
    if expected.rollback and expected.rollback.upper() != (s.rollback_status or "NONE"):
        problems.append(
            f"compensation {(s.rollback_status or 'not run').lower()}, expected {expected.rollback.upper()}"
        )
    if expected.error_contains and expected.error_contains not in (s.error or ""):
        problems.append(f"error {s.error!r} lacks {expected.error_contains!r}")
    detail = "; ".join(problems) or (s.error or s.skip_reason or "")
    if problems and s.error:
        detail += f" ({s.error})"
    return Check(not problems, label, detail)


def _first_difference(expected: Any, actual: Any, path: str = "$") -> str | None:
    if isinstance(expected, dict) and isinstance(actual, dict):
        for key in sorted(set(expected) | set(actual)):
            if key not in actual:
                return f"{path}.{key}: missing"
            if key not in expected:
                return f"{path}.{key}: unexpected"
            found = _first_difference(expected[key], actual[key], f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            found = _first_difference(e, a, f"{path}[{i}]")
            if found:
                return found
        return None
    if expected != actual:
        return f"{path}: expected {json.dumps(expected, default=str)}, got {json.dumps(actual, default=str)}"
    return None


class Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    fixture: str
    expected: str | None = None  # canonical result JSON, relative to the pack
    expect: Expectations | None = None


class AcceptancePack(BaseModel):
    model_config = ConfigDict(extra="forbid")

    runbook: str = "runbook.yaml"
    scenarios: list[Scenario]


def load_pack(directory: Path) -> AcceptancePack:
    path = directory / "acceptance.yml"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        return AcceptancePack.model_validate(data)
    except OSError as exc:
        raise FixtureError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise FixtureError(f"{path}: invalid YAML: {exc}") from None
    except ValidationError as exc:
        err = exc.errors()[0]
        raise FixtureError(f"{path}: {'.'.join(map(str, err['loc']))}: {err['msg']}") from None


def load_expected(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise FixtureError(f"{path}: cannot read expected result: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise FixtureError(f"{path}: invalid JSON: {exc}") from None
