"""Trigger inputs: parameters checked against the runbook's JSON Schema, env captured by name."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from typing import Any

import jsonschema

from rb_common.errors import RbError
from rb_common.expressions import expressions_in, references
from rb_common.model import Runbook

_BARE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*$")


class ParamsError(RbError):
    def __init__(self, problems: list[dict[str, str]]) -> None:
        self.problems = problems
        super().__init__(
            "invalid parameters: " + "; ".join(f"{p['field']}: {p['message']}" for p in problems)
        )


def _with_defaults(schema: Mapping[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(params)
    for name, prop in (schema.get("properties") or {}).items():
        if name not in out and isinstance(prop, Mapping) and "default" in prop:
            out[name] = copy.deepcopy(prop["default"])
    return out


def resolve_params(runbook: Runbook, given: Mapping[str, Any]) -> dict[str, Any]:
    """Parameters with schema defaults applied; ParamsError names every failing field."""
    schema = runbook.parameters
    params = dict(given)
    if not schema:
        return params
    params = _with_defaults(schema, params)
    validator = jsonschema.Draft202012Validator(schema)
    problems = [
        {"field": ".".join(str(p) for p in err.absolute_path) or "(root)", "message": err.message}
        for err in sorted(validator.iter_errors(params), key=lambda e: list(e.absolute_path))
    ]
    if problems:
        raise ParamsError(problems)
    return params


def coerce_cli_value(text: str) -> Any:
    """`--param k=v` values: JSON scalars and collections when they parse, else the string."""
    import json

    try:
        return json.loads(text)
    except ValueError:
        return text


def env_names(runbook: Runbook) -> set[str]:
    """Environment variables the runbook reads: `env.X` and bare `${X}` that is no parameter."""
    declared = set(((runbook.parameters or {}).get("properties") or {}).keys())
    names: set[str] = set()
    sources: list[Any] = [s.inputs for s in runbook.steps]
    sources += [s.when for s in runbook.steps] + [s.rollback.inputs for s in runbook.steps if s.rollback]
    sources += [a.expect for a in runbook.assumptions] + list(runbook.kpis.custom.values())
    for body in expressions_in(sources):
        bare = _BARE.match(body)
        if bare and bare.group(1) not in declared:
            names.add(bare.group(1))
            continue
        names.update(ref[1] for ref in references(body) if ref[0] == "env" and len(ref) > 1)
    return names


def env_snapshot(runbook: Runbook, environ: Mapping[str, str]) -> dict[str, str]:
    return pick_env(env_names(runbook), environ)


def pick_env(names: Iterable[str], environ: Mapping[str, str]) -> dict[str, str]:
    """The values of `names` that `environ` has, by name."""
    return {name: environ[name] for name in sorted(names) if name in environ}
