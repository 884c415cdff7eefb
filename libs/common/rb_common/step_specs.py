"""What each step type accepts: input JSON Schemas, shared by the validator and the executor."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jsonschema

from rb_common.durations import parse_duration

_DURATION = {"anyOf": [{"type": "number", "minimum": 0}, {"type": "string"}]}
_STR_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_ANY_OBJECT: dict[str, Any] = {"type": "object"}
_DURATION_KEYS = ("seconds", "poll_interval", "timeout")
AI_MAX_TOKENS = 16_384  # the most an `ai` step may ask for


@dataclass(frozen=True)
class StepSpec:
    name: str
    properties: dict[str, Any]
    required: tuple[str, ...] = ()
    # Alternatives, e.g. `source_url` or `url`: one of each tuple must be present.
    one_of: tuple[tuple[str, ...], ...] = ()
    open_inputs: bool = False  # extra inputs allowed (api_call body fields, transform)
    external: bool = True  # has effects outside rb: stubbed by fixtures in `rb test`
    description: str = ""
    # Inputs the step evaluates itself, repeatedly (e.g. wait.until): recorded as written.
    deferred: tuple[str, ...] = ()
    # Inputs that may name a file next to the runbook; its text is snapshotted at request time.
    file_inputs: tuple[str, ...] = ()
    # External, yet run for real under `rb test` when no stub is given (ui_screenshot: it only
    # looks at a page the fixture names).
    runs_in_tests: bool = False

    def check(self, inputs: dict[str, Any]) -> list[str]:
        """Problems with `inputs`; values that are expressions are checked at run time instead."""
        problems: list[str] = []
        for key in self.required:
            if key not in inputs:
                problems.append(f"missing required input '{key}'")
        for names in self.one_of:
            if not any(n in inputs for n in names):
                problems.append(f"missing required input '{names[0]}' (or {', '.join(names[1:])})")
        for key, value in inputs.items():
            schema = self.properties.get(key)
            if schema is None:
                if not self.open_inputs:
                    known = ", ".join(sorted(self.properties))
                    problems.append(f"unknown input '{key}' for type {self.name} (known: {known})")
                continue
            if _has_expression(value):
                continue
            error = _first_error(value, schema)
            if error is not None:
                problems.append(f"input '{key}': {error.message}")
                continue
            if key in _DURATION_KEYS and schema is _DURATION:
                try:
                    parse_duration(value)
                except ValueError as exc:
                    problems.append(f"input '{key}': {exc}")
        return problems


# One validator per input schema (they are this module's constants): `jsonschema.validate` checks
# the schema itself against the metaschema on every call, which cost the executor ~10% of its CPU
# per step under load (bench/loadtest.md).
_VALIDATORS: dict[int, tuple[Any, Any]] = {}


def _first_error(value: Any, schema: dict[str, Any]) -> jsonschema.ValidationError | None:
    """What `jsonschema.validate(value, schema)` would raise (its best match), or None."""
    cached = _VALIDATORS.get(id(schema))
    if cached is None or cached[0] is not schema:
        cls = jsonschema.validators.validator_for(schema)
        cls.check_schema(schema)
        cached = (schema, cls(schema))
        _VALIDATORS[id(schema)] = cached
    return jsonschema.exceptions.best_match(cached[1].iter_errors(value))


def _has_expression(value: Any) -> bool:
    if isinstance(value, str):
        return "${" in value
    if isinstance(value, list):
        return any(_has_expression(v) for v in value)
    if isinstance(value, dict):
        return any(_has_expression(v) for v in value.values())
    return False


# One browser action of ui_screenshot, in order: {click: sel}, {fill: sel, value: text},
# {press: key, selector?: sel}, {wait: sel}.
_UI_ACTION = {
    "oneOf": [
        {"type": "object", "properties": {"click": {"type": "string"}}, "required": ["click"],
         "additionalProperties": False},
        {"type": "object", "properties": {"fill": {"type": "string"}, "value": {"type": "string"}},
         "required": ["fill", "value"], "additionalProperties": False},
        {"type": "object", "properties": {"press": {"type": "string"}, "selector": {"type": "string"}},
         "required": ["press"], "additionalProperties": False},
        {"type": "object", "properties": {"wait": {"type": "string"}}, "required": ["wait"],
         "additionalProperties": False},
    ]
}

_HTTP = {
    "source_url": {"type": "string"},
    "url": {"type": "string"},
    "method": {"enum": ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]},
    "headers": _STR_MAP,
    "params": _ANY_OBJECT,
    "body": {},
    "auth_token": {"type": "string"},
    "expect_status": {"anyOf": [{"type": "integer"}, {"type": "array", "items": {"type": "integer"}}]},
}

SPECS: dict[str, StepSpec] = {
    spec.name: spec
    for spec in [
        StepSpec("data_fetch", _HTTP, one_of=(("source_url", "url"),), description="HTTP fetch"),
        StepSpec("http", _HTTP, one_of=(("url", "source_url"),), description="HTTP request"),
        StepSpec(
            "api_call",
            {
                "endpoint": {"type": "string"},
                "method": {"enum": ["GET", "POST", "PUT", "PATCH", "DELETE"]},
                "headers": _STR_MAP,
                "auth_token": {"type": "string"},
                "query": {"type": "string"},
                "variables": _ANY_OBJECT,
                "body": {},
                "expect_status": {
                    "anyOf": [{"type": "integer"}, {"type": "array", "items": {"type": "integer"}}]
                },
            },
            required=("endpoint",),
            open_inputs=True,
            file_inputs=("query",),
            description="REST or GraphQL call",
        ),
        StepSpec(
            "schema_check",
            {
                "schema": {"anyOf": [{"type": "string"}, {"type": "object"}]},
                "entities": {"type": "array"},
                "document": {},
            },
            required=("schema",),
            one_of=(("entities", "document"),),
            external=False,
            file_inputs=("schema",),
        ),
        StepSpec("transform", {}, open_inputs=True, external=False),
        StepSpec(
            "assert",
            {"that": {}, "message": {"type": "string"}},
            required=("that",),
            external=False,
            description="fail unless a condition holds",
        ),
        StepSpec(
            "wait",
            {
                "seconds": _DURATION,
                "until": {"type": ["string", "boolean"]},
                "poll_interval": _DURATION,
                "timeout": _DURATION,
            },
            one_of=(("seconds", "until"),),
            external=False,
            deferred=("until",),
        ),
        StepSpec(
            "shell",
            {
                "command": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                "env": _STR_MAP,
                "cwd": {"type": "string"},
                "stdin": {"type": "string"},
                "allow_failure": {"type": "boolean"},
            },
            required=("command",),
        ),
        StepSpec(
            "sql_query",
            {"connection": {"type": "string"}, "query": {"type": "string"}, "params": {}},
            required=("connection", "query"),
        ),
        StepSpec(
            "metrics_publish",
            {
                "metrics": {"type": "object", "additionalProperties": {"type": "number"}, "minProperties": 1},
                "job": {"type": "string"},
                "gateway_url": {"type": "string"},
                "labels": _STR_MAP,
            },
            required=("metrics",),
        ),
        StepSpec(
            "approval",
            {
                # user names (an identity's name or actor) and/or `role:<role>`
                "approvers": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                "min_approvals": {"type": "integer", "minimum": 1},
                "timeout": _DURATION,
                "timeout_action": {"enum": ["fail", "approve", "skip"]},
                "prompt": {"type": "string"},
                "require_comment": {"type": "boolean"},
            },
            required=("approvers",),
            description="wait for people: decided by the coordinator, never sent to a worker",
        ),
        StepSpec(
            "branch",
            {
                "cases": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "properties": {
                            "when": {"type": ["string", "boolean"]},
                            "then": {"type": "array", "items": {"type": "string"}},
                        },
                        "required": ["when", "then"],
                        "additionalProperties": False,
                    },
                },
                "if": {"type": ["string", "boolean"]},
                "then": {"type": "array", "items": {"type": "string"}},
                "else": {"type": "array", "items": {"type": "string"}},
            },
            one_of=(("cases", "if"),),
            external=False,
            description="run the steps of the first case that holds; skip the others",
            deferred=("cases", "if"),
        ),
        StepSpec(
            "for_each",
            {
                "items": {"anyOf": [{"type": "array"}, {"type": "string"}]},
                "step": _ANY_OBJECT,
                "max_iterations": {"type": "integer", "minimum": 1, "maximum": 1000},
                "concurrency": {"type": "integer", "minimum": 1},
            },
            required=("items", "step"),
            external=False,
            description="run one step per item (at most 1000), results as a list",
            deferred=("step",),
        ),
        StepSpec(
            "wait_for_event",
            {
                "subject": {"type": "string", "pattern": "^[A-Za-z0-9_-]+(\\.[A-Za-z0-9_-]+)*$"},
                "correlation": {},
                "timeout": _DURATION,
            },
            required=("subject",),
            external=False,
            description="wait for an outside event with this subject and correlation",
        ),
        StepSpec(
            "runbook",
            {
                "runbook": {"type": "string"},
                "params": _ANY_OBJECT,
                "max_depth": {"type": "integer", "minimum": 1, "maximum": 5},
            },
            required=("runbook",),
        ),
        StepSpec(
            "ui_screenshot",
            {
                "url": {"type": "string"},
                "selector": {"type": "string"},  # an element shot; else the viewport
                "full_page": {"type": "boolean"},
                "viewport": {
                    "type": "object",
                    "properties": {
                        "width": {"type": "integer", "minimum": 1, "maximum": 10000},
                        "height": {"type": "integer", "minimum": 1, "maximum": 10000},
                    },
                    "additionalProperties": False,
                },
                # a selector to wait for, or load | domcontentloaded | networkidle
                "wait_for": {"type": "string"},
                "mask": {"type": "array", "items": {"type": "string"}},  # blacked out
                "actions": {"type": "array", "items": _UI_ACTION, "maxItems": 50},
                "timeout": _DURATION,  # each browser operation (default 30 s)
                "baseline": {"type": "string"},  # a PNG next to the runbook (rb test: the pack's)
                "threshold": {"type": "number", "minimum": 0, "maximum": 1},
                "max_diff_ratio": {"type": "number", "minimum": 0, "maximum": 1},
            },
            required=("url",),
            runs_in_tests=True,
            description="screenshot a page (Chromium) and compare it with a baseline",
        ),
        StepSpec(
            "notify",
            {
                "message": {"type": "string", "minLength": 1},
                "slack": {
                    "type": "object",
                    "properties": {"channel": {"type": "string", "minLength": 1}},
                    "required": ["channel"],
                    "additionalProperties": False,
                },
                "email": {
                    "type": "object",
                    "properties": {
                        "to": {
                            "anyOf": [
                                {"type": "string", "minLength": 1},
                                {"type": "array", "items": {"type": "string"}, "minItems": 1},
                            ]
                        },
                        "subject": {"type": "string"},
                    },
                    "required": ["to"],
                    "additionalProperties": False,
                },
                "webhook": {
                    "type": "object",
                    "properties": {"url": {"type": "string", "minLength": 1}},
                    "required": ["url"],
                    "additionalProperties": False,
                },
            },
            required=("message",),
            one_of=(("slack", "email", "webhook"),),
            description="a message through the notifier (Slack, email, webhook)",
        ),
        # -- issue 14, children part: the `ai` step (the `runbook` step's spec is above) --------
        StepSpec(
            "ai",
            {
                "prompt": {"type": "string", "minLength": 1},
                "system": {"type": "string"},
                "model": {"type": "string", "minLength": 1},
                "schema": {"type": "object"},
                "temperature": {"type": "number", "minimum": 0, "maximum": 2},
                "max_tokens": {"type": "integer", "minimum": 1, "maximum": AI_MAX_TOKENS},
            },
            required=("prompt",),
            description="chat completion from an OpenAI-compatible endpoint",
        ),
    ]
}
