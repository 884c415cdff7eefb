"""Validator checks of the flow-control steps (`branch`, `for_each`), beyond their input schemas.

`problems(runbook)` gives (message, step id, location) triples; rb_common.validator reports them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from rb_common.model import Runbook, Step
from rb_common.step_specs import SPECS

MAX_ITEMS = 1000  # for_each's hard cap (the coordinator enforces it at run time too)
BODY_TYPES_REFUSED = frozenset({"branch", "for_each"})

Problem = tuple[str, str, tuple[Any, ...]]

# What a flow step's outputs hold when it declares none (the coordinator's result, as is).
IMPLICIT_OUTPUTS: dict[str, dict[str, str]] = {
    "branch": {"case": "$.case", "taken": "$.taken", "skipped": "$.skipped"},
    "for_each": {"results": "$.results", "count": "$.count"},
    "wait_for_event": {"subject": "$.subject", "correlation": "$.correlation", "data": "$.data"},
}


def problems(runbook: Runbook) -> Iterator[Problem]:
    for i, step in enumerate(runbook.steps):
        if step.type == "branch":
            yield from _branch(runbook, step, i)
        elif step.type == "for_each":
            yield from _for_each(step, i)


def _branch(runbook: Runbook, step: Step, i: int) -> Iterator[Problem]:
    cases = step.inputs.get("cases")
    targets: list[tuple[str, tuple[Any, ...]]] = []
    if isinstance(cases, list):
        for c, case in enumerate(cases):
            if isinstance(case, dict):
                for t, sid in enumerate(case.get("then") or []):
                    targets.append((sid, ("steps", i, "inputs", "cases", c, "then", t)))
    elif "if" in step.inputs:
        for t, sid in enumerate(step.inputs.get("then") or []):
            targets.append((sid, ("steps", i, "inputs", "then", t)))
    for t, sid in enumerate(step.inputs.get("else") or []):
        targets.append((sid, ("steps", i, "inputs", "else", t)))
    known = {s.id: s for s in runbook.steps}
    for sid, loc in targets:
        if not isinstance(sid, str):
            continue
        target = known.get(sid)
        if target is None:
            yield f"branch names unknown step '{sid}'", step.id, loc
        elif step.id not in target.depends_on:
            yield f"step '{sid}' is on a side of this branch, so it must depend on '{step.id}'", step.id, loc


def _for_each(step: Step, i: int) -> Iterator[Problem]:
    items = step.inputs.get("items")
    limit = step.inputs.get("max_iterations")
    cap = min(MAX_ITEMS, limit) if isinstance(limit, int) else MAX_ITEMS
    if isinstance(items, list) and len(items) > cap:
        yield (
            f"for_each 'items' lists {len(items)} items, over the cap of {cap}",
            step.id,
            (
                "steps",
                i,
                "inputs",
                "items",
            ),
        )
    body = step.inputs.get("step")
    if not isinstance(body, dict):
        return
    loc = ("steps", i, "inputs", "step")
    type_name = body.get("type")
    spec = SPECS.get(type_name) if isinstance(type_name, str) else None
    if spec is None:
        yield (
            f"for_each body: unknown step type {type_name!r} (known: {', '.join(sorted(SPECS))})",
            step.id,
            loc,
        )
        return
    if type_name in BODY_TYPES_REFUSED:
        yield f"for_each body: a '{type_name}' step cannot be a loop's body", step.id, loc
    unknown = sorted(set(body) - {"type", "inputs", "outputs", "timeout", "retry", "description"})
    if unknown:
        yield f"for_each body: unknown keys {', '.join(unknown)}", step.id, loc
    inputs = body.get("inputs") or {}
    if isinstance(inputs, dict):
        for problem in spec.check(inputs):
            yield f"for_each body: {problem}", step.id, (*loc, "inputs")
