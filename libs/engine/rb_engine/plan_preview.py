"""A dry run's plan: what a runbook would do with these parameters, touching nothing (pure).

Steps in order, grouped by level of the DAG (a group's steps may run in parallel, up to
`defaults.concurrency`), each with its inputs after expression evaluation where the parameters
alone decide them. An expression that reads anything else (`secrets.*` above all, never resolved
here, or `steps.*`, `env`, `trigger`, `execution`) is kept as written and its input named in
`pending`; so are the inputs a step evaluates itself (`wait.until`, `branch.cases`, ...).

    plan = preview(runbook, {"region": "eu"})   # ParamsError for parameters that do not fit
    plan.as_json()
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rb_common.expressions import ROOT_NAMES, ExpressionError, expressions_in, references, render
from rb_common.model import Runbook
from rb_common.params import resolve_params
from rb_common.step_specs import SPECS

_AT_RUN_TIME = "decided at run time"


@dataclass(frozen=True)
class PlannedStep:
    id: str
    type: str
    group: int
    depends_on: list[str]
    external: bool
    inputs: dict[str, Any]
    pending: list[str]  # inputs kept as written: they need secrets, step outputs, run time
    when: Any = None
    on_failure: str = "abort"


@dataclass(frozen=True)
class Plan:
    runbook_id: str
    version: str
    params: dict[str, Any]
    concurrency: int
    groups: list[list[str]]
    steps: list[PlannedStep] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "runbook_id": self.runbook_id,
            "version": self.version,
            "params": self.params,
            "concurrency": self.concurrency,
            "order": [s.id for s in self.steps],
            "groups": self.groups,
            "external": [s.id for s in self.steps if s.external],
            "steps": [
                {
                    "id": s.id,
                    "type": s.type,
                    "group": s.group,
                    "depends_on": s.depends_on,
                    "external": s.external,
                    "inputs": s.inputs,
                    "pending": s.pending,
                    "when": s.when,
                    "on_failure": s.on_failure,
                }
                for s in self.steps
            ],
        }


class PlanError(ValueError):
    """The DAG has no order (a cycle or an unknown dependency): `rb validate` says which."""


def levels(runbook: Runbook) -> list[list[str]]:
    """The steps by DAG level (file order within a level)."""
    ids = [s.id for s in runbook.steps]
    deps = {s.id: set(s.depends_on) for s in runbook.steps}
    unknown = sorted({d for ds in deps.values() for d in ds} - set(ids))
    if unknown:
        raise PlanError(f"depends_on names unknown steps: {', '.join(unknown)}")
    done: set[str] = set()
    out: list[list[str]] = []
    while len(done) < len(ids):
        ready = [i for i in ids if i not in done and deps[i] <= done]
        if not ready:
            raise PlanError(f"a cycle among: {', '.join(i for i in ids if i not in done)}")
        out.append(ready)
        done.update(ready)
    return out


def _params_only(value: str) -> bool:
    try:
        roots = {ref[0] for body in expressions_in(value) for ref in references(body)}
    except ExpressionError:
        return False
    return not roots & (ROOT_NAMES - {"params"})


def _evaluate(value: Any, context: dict[str, Any]) -> tuple[Any, bool]:
    """(value after evaluation, True) or (value as written, False) when it needs more than params."""
    if isinstance(value, str):
        if "${" not in value:
            return value, True
        if not _params_only(value):
            return value, False
        try:
            return render(value, context), True
        except ExpressionError:
            return value, False
    if isinstance(value, list):
        pairs = [_evaluate(v, context) for v in value]
        return [v for v, _ in pairs], all(ok for _, ok in pairs)
    if isinstance(value, dict):
        items = {k: _evaluate(v, context) for k, v in value.items()}
        return {k: v for k, (v, _) in items.items()}, all(ok for _, ok in items.values())
    return value, True


def preview(runbook: Runbook, given: dict[str, Any]) -> Plan:
    params = resolve_params(runbook, given)
    context: dict[str, Any] = {"params": params, "env": {}, "secrets": {}, "steps": {}, "trigger": {}}
    groups = levels(runbook)
    group_of = {sid: n for n, group in enumerate(groups) for sid in group}
    planned: list[PlannedStep] = []
    for group in groups:
        for sid in group:
            step = runbook.step(sid)
            spec = SPECS.get(step.type)
            inputs: dict[str, Any] = {}
            pending: list[str] = []
            for key, value in step.inputs.items():
                if spec is not None and key in spec.deferred:
                    inputs[key], ok = value, False
                else:
                    inputs[key], ok = _evaluate(value, context)
                if not ok:
                    pending.append(key)
            when: Any = step.when
            if isinstance(when, str):
                text = when if "${" in when else "${" + when + "}"
                evaluated, ok = _evaluate(text, context)
                when = evaluated if ok else f"{step.when} ({_AT_RUN_TIME})"
            planned.append(
                PlannedStep(
                    id=sid,
                    type=step.type,
                    group=group_of[sid],
                    depends_on=list(step.depends_on),
                    external=spec.external if spec is not None else True,
                    inputs=inputs,
                    pending=pending,
                    when=when,
                    on_failure=step.on_failure,
                )
            )
    return Plan(runbook.id, runbook.version, params, runbook.defaults.concurrency, groups, planned)
