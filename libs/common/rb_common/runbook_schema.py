"""The JSON Schema of runbook files (`rb schema`, `GET /api/v1/schema/runbook`).

Generated from the pydantic model (rb_common.model) and, per step `type`, the input schemas of
rb_common.step_specs (an `if`/`then` per type). It checks structure only, for editors
(yaml-language-server) and the console: the DAG (cycles, unknown `depends_on`), expressions and
references stay the validator's job (rb_common.validator)."""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

from rb_common.model import Runbook
from rb_common.step_specs import SPECS, StepSpec

_DURATION = {"anyOf": [{"type": "number", "minimum": 0}, {"type": "string"}]}
# A value the validator leaves to run time: a string holding an expression.
_EXPRESSION = {"type": "string", "pattern": r"\$\{"}


def _lenient(schema: Any) -> Any:
    """`schema`, where any value (nested ones too) may instead be an expression: the validator
    checks inputs holding expressions at run time (StepSpec.check)."""
    if not isinstance(schema, dict) or not schema:
        return schema
    out = dict(schema)
    if isinstance(out.get("properties"), dict):
        out["properties"] = {k: _lenient(v) for k, v in out["properties"].items()}
    for key in ("additionalProperties", "items"):
        if isinstance(out.get(key), dict):
            out[key] = _lenient(out[key])
    for key in ("anyOf", "oneOf"):
        if isinstance(out.get(key), list):
            out[key] = [_lenient(v) for v in out[key]]
    return {"anyOf": [out, _EXPRESSION]}


def _input_schema(spec: StepSpec) -> dict[str, Any]:
    properties = {key: _lenient(schema) for key, schema in spec.properties.items()}
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if spec.required:
        schema["required"] = list(spec.required)
    if not spec.open_inputs:
        schema["additionalProperties"] = False
    if spec.one_of:
        schema["allOf"] = [{"anyOf": [{"required": [n]} for n in names]} for names in spec.one_of]
    return schema


def _per_type(spec: StepSpec) -> dict[str, Any]:
    then: dict[str, Any] = {"properties": {"inputs": _input_schema(spec)}}
    if spec.required or spec.one_of:
        then["required"] = ["inputs"]
    return {"if": {"properties": {"type": {"const": spec.name}}, "required": ["type"]}, "then": then}


def _durations(node: Any) -> None:
    """Durations are numbers or strings like "5m" (the model parses them before validating)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in {"timeout", "initial_delay", "max_delay"} and isinstance(value, dict):
                nullable = any(o.get("type") == "null" for o in value.get("anyOf", []))
                options = [*_DURATION["anyOf"], *([{"type": "null"}] if nullable else [])]
                node[key] = {k: v for k, v in value.items() if k not in ("type", "anyOf", "minimum")}
                node[key]["anyOf"] = copy.deepcopy(options)
            else:
                _durations(value)
    elif isinstance(node, list):
        for item in node:
            _durations(item)


@cache
def _cached() -> dict[str, Any]:
    schema = Runbook.model_json_schema(mode="validation")
    defs = schema["$defs"]
    _durations(schema)
    types = sorted(SPECS)
    step = defs["Step"]["properties"]
    step["type"] = {"title": "Type", "enum": types}
    step["depends_on"] = {
        "title": "Depends On",
        "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
        "default": [],
    }
    step["on_failure"] = {**step["on_failure"], "enum": [*step["on_failure"]["enum"], "log_and_continue"]}
    defs["Step"]["allOf"] = [_per_type(SPECS[name]) for name in types]
    defs["Rollback"]["properties"]["type"] = {"title": "Type", "enum": types}
    one = {"type": "object", "minProperties": 1, "maxProperties": 1}
    schema["properties"]["assumptions"] = {
        "title": "Assumptions",
        "anyOf": [
            {"type": "object"},
            {"type": "array", "items": {"anyOf": [{"$ref": "#/$defs/Assumption"}, one]}},
        ],
    }
    # The model checks semver in a validator; the schema says it with a pattern.
    schema["properties"]["version"]["pattern"] = (
        r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$"
    )
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **schema,
    }


def runbook_json_schema() -> dict[str, Any]:
    """A fresh copy of the schema (callers may change theirs)."""
    return copy.deepcopy(_cached())
