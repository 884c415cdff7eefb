"""Step outputs: JSONPaths into a step's raw result, or literals."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from jsonpath_ng import JSONPath
from jsonpath_ng.exceptions import JsonPathParserError
from jsonpath_ng.ext import parse as jsonpath_parse


class OutputError(ValueError):
    pass


def is_jsonpath(spec: Any) -> bool:
    return isinstance(spec, str) and spec.startswith("$") and not spec.startswith("${")


@lru_cache(maxsize=1024)
def compile_jsonpath(path: str) -> JSONPath:
    try:
        return jsonpath_parse(path)
    except (JsonPathParserError, Exception) as exc:
        raise OutputError(f"invalid JSONPath {path!r}: {exc}") from None


def extract_outputs(specs: dict[str, Any], raw: Any) -> dict[str, Any]:
    """Each output's value: one match is the value itself, several are a list."""
    outputs: dict[str, Any] = {}
    for name, spec in specs.items():
        if not is_jsonpath(spec):
            outputs[name] = spec
            continue
        matches = [m.value for m in compile_jsonpath(spec).find(raw)]
        if not matches:
            raise OutputError(f"output '{name}': {spec} matched nothing in the step's result")
        outputs[name] = matches[0] if len(matches) == 1 and "*" not in spec else matches
    return outputs
