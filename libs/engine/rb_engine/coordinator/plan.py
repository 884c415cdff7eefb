"""An execution's plan: its runbook parsed, and the step graph derived from it (dependencies,
order, dependants). Pure. Every execution of the same runbook definition gets the same plan, so
it is made once per definition (a burst of executions of one runbook parses it once).

A plan is shared: nothing in it is changed after it is made (the fold copies what it changes).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from graphlib import TopologicalSorter
from typing import Any

import orjson

from rb_common.model import Runbook

PLANS_KEPT = 128  # definitions; a plan is a few kB per step


@dataclass(frozen=True)
class Plan:
    runbook: Runbook
    order: tuple[str, ...]  # topological; ties broken by declaration order
    deps: dict[str, tuple[str, ...]]
    dependants: dict[str, tuple[str, ...]]
    position: dict[str, int]  # in `order`
    ready: frozenset[str]  # steps with no dependencies


def plan(definition: dict[str, Any]) -> Plan:
    """The plan of a runbook definition (an `execution.requested` snapshot)."""
    try:
        # Key order kept (it is the order of the inputs the steps record); only plain JSON
        # values make a key, so two definitions share a plan only if they are the same JSON.
        key = orjson.dumps(
            definition,
            option=orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS,
            default=_refuse,
        )
    except TypeError:
        return make_plan(definition)
    return _planned(key, definition)


def _refuse(value: Any) -> Any:
    raise TypeError(type(value).__name__)


_PLANS: dict[bytes, Plan] = {}  # by definition JSON, oldest first
_LOCK = threading.Lock()  # the recorder folds in threads


def _planned(key: bytes, definition: dict[str, Any]) -> Plan:
    found = _PLANS.get(key)
    if found is None:
        found = make_plan(definition)
        with _LOCK:
            while len(_PLANS) >= PLANS_KEPT:
                del _PLANS[next(iter(_PLANS))]  # the oldest
            _PLANS[key] = found
    return found


def make_plan(definition: dict[str, Any]) -> Plan:
    runbook = Runbook.model_validate(definition)
    deps = {s.id: tuple(s.depends_on) for s in runbook.steps}
    position = {s.id: i for i, s in enumerate(runbook.steps)}
    sorter = TopologicalSorter(deps)
    sorter.prepare()
    order: list[str] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready(), key=position.__getitem__)
        order.extend(ready)
        sorter.done(*ready)
    dependants: dict[str, list[str]] = {sid: [] for sid in deps}
    for sid, ds in deps.items():
        for d in ds:
            dependants[d].append(sid)
    return Plan(
        runbook=runbook,
        order=tuple(order),
        deps=deps,
        dependants={sid: tuple(ds) for sid, ds in dependants.items()},
        position={sid: i for i, sid in enumerate(order)},
        ready=frozenset(sid for sid in order if not deps[sid]),
    )
