"""Graph edits applied to a runbook's YAML text, keeping its comments and key order (ruamel.yaml
round-trip): the console's graph editor sends one edit, the YAML stays the source of truth.

    apply_edit(text, {"op": "add_edge", "from": "a", "to": "b"}) -> new text

Edits: add_step {step: {id, type, ...}}, remove_step {id} (also from others' depends_on),
add_edge / remove_edge {from, to} (`to` depends on `from`), set_input {id, key, value}
(value null removes the input), set_field {key, value} (id, name, version, description,
owner). EditError for an edit that does not apply.
"""

from __future__ import annotations

import io
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

MAX_TEXT = 512 * 1024


class EditError(ValueError):
    """The edit does not apply to this text (unknown step, duplicate id, not a runbook)."""


def _yaml() -> YAML:
    y = YAML(typ="rt")
    y.preserve_quotes = True
    y.width = 4096  # never re-wrap long strings
    y.indent(mapping=2, sequence=4, offset=2)
    return y


def _load(text: str) -> CommentedMap:
    if len(text) > MAX_TEXT:
        raise EditError(f"the runbook text is over {MAX_TEXT} bytes")
    try:
        doc = _yaml().load(text)
    except (YAMLError, RecursionError) as exc:
        raise EditError(
            f"invalid YAML: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        ) from None
    if not isinstance(doc, CommentedMap):
        raise EditError("the runbook is not a mapping")
    if "steps" not in doc or doc["steps"] is None:
        doc["steps"] = CommentedSeq()
    if not isinstance(doc["steps"], list):
        raise EditError("'steps' is not a list")
    return doc


def _step(doc: CommentedMap, step_id: Any) -> CommentedMap:
    for step in doc["steps"]:
        if isinstance(step, CommentedMap) and step.get("id") == step_id:
            return step
    raise EditError(f"no step {step_id!r}")


def _deps(step: CommentedMap) -> CommentedSeq:
    deps = step.get("depends_on")
    if isinstance(deps, str):
        deps = CommentedSeq([deps])
        deps.fa.set_flow_style()
        step["depends_on"] = deps
    elif not isinstance(deps, list):
        deps = CommentedSeq()
        deps.fa.set_flow_style()
        _insert_after(step, "depends_on", deps, after=("description", "type", "id"))
    return step["depends_on"]


def _insert_after(node: CommentedMap, key: str, value: Any, after: tuple[str, ...]) -> None:
    keys = list(node)
    for anchor in after:
        if anchor in keys:
            node.insert(keys.index(anchor) + 1, key, value)
            return
    node[key] = value


_STEP_KEYS = ("id", "type", "description", "depends_on", "inputs")


def _quoted(value: Any) -> Any:
    """New values as YAML: strings with expressions or YAML punctuation in double quotes."""
    if isinstance(value, str) and (value != value.strip() or any(c in value for c in "${}[]:#,&*!|>'\"%@`")):
        return DoubleQuotedScalarString(value)
    if isinstance(value, list):
        return [_quoted(v) for v in value]
    if isinstance(value, dict):
        return {k: _quoted(v) for k, v in value.items()}
    return value


def _add_step(doc: CommentedMap, edit: dict[str, Any]) -> None:
    spec = edit.get("step")
    if (
        not isinstance(spec, dict)
        or not isinstance(spec.get("id"), str)
        or not isinstance(spec.get("type"), str)
    ):
        raise EditError("add_step needs step: {id, type}")
    if any(isinstance(s, dict) and s.get("id") == spec["id"] for s in doc["steps"]):
        raise EditError(f"a step {spec['id']!r} exists already")
    step = CommentedMap()
    ordered = [k for k in _STEP_KEYS if k in spec] + [k for k in spec if k not in _STEP_KEYS]
    for key in ordered:
        step[key] = _quoted(spec[key])
    if isinstance(step.get("depends_on"), list):
        deps = CommentedSeq(step["depends_on"])
        deps.fa.set_flow_style()
        step["depends_on"] = deps
    doc["steps"].append(step)


def _remove_step(doc: CommentedMap, edit: dict[str, Any]) -> None:
    target = _step(doc, edit.get("id"))
    doc["steps"].remove(target)
    for step in doc["steps"]:
        if not isinstance(step, dict):
            continue
        deps = step.get("depends_on")
        if deps == edit["id"]:
            del step["depends_on"]
        elif isinstance(deps, list) and edit["id"] in deps:
            deps.remove(edit["id"])
            if not deps:
                del step["depends_on"]


def _edge(doc: CommentedMap, edit: dict[str, Any], add: bool) -> None:
    source, target = edit.get("from"), edit.get("to")
    _step(doc, source)
    step = _step(doc, target)
    if add:
        if source == target:
            raise EditError("a step cannot depend on itself")
        deps = _deps(step)
        if source not in deps:
            deps.append(source)
        return
    deps = step.get("depends_on")
    if deps == source:
        del step["depends_on"]
    elif isinstance(deps, list) and source in deps:
        deps.remove(source)
        if not deps:
            del step["depends_on"]
    else:
        raise EditError(f"{target!r} does not depend on {source!r}")


def _set_input(doc: CommentedMap, edit: dict[str, Any]) -> None:
    step = _step(doc, edit.get("id"))
    key = edit.get("key")
    if not isinstance(key, str) or not key:
        raise EditError("set_input needs a key")
    inputs = step.get("inputs")
    if not isinstance(inputs, dict):
        if edit.get("value") is None:
            return
        inputs = CommentedMap()
        _insert_after(step, "inputs", inputs, after=("depends_on", "description", "type", "id"))
    if edit.get("value") is None:
        inputs.pop(key, None)
        if not inputs:
            del step["inputs"]
    else:
        inputs[key] = _quoted(edit["value"])


_FIELDS = ("id", "name", "version", "description", "owner")


def _set_field(doc: CommentedMap, edit: dict[str, Any]) -> None:
    key, value = edit.get("key"), edit.get("value")
    if key not in _FIELDS or not isinstance(value, str):
        raise EditError(f"set_field sets one of {', '.join(_FIELDS)} to a string")
    if key in doc:
        doc[key] = _quoted(value)
    else:  # after the fields that come before it, else first
        keys = list(doc)
        before = [keys.index(k) for k in _FIELDS[: _FIELDS.index(key)] if k in keys]
        doc.insert(max(before) + 1 if before else 0, key, _quoted(value))


_OPS = {
    "add_step": _add_step,
    "remove_step": _remove_step,
    "add_edge": lambda doc, edit: _edge(doc, edit, add=True),
    "remove_edge": lambda doc, edit: _edge(doc, edit, add=False),
    "set_input": _set_input,
    "set_field": _set_field,
}
OPS = tuple(_OPS)


def apply_edit(text: str, edit: dict[str, Any]) -> str:
    op = _OPS.get(str(edit.get("op")))
    if op is None:
        raise EditError(f"unknown op {edit.get('op')!r} (one of {', '.join(OPS)})")
    doc = _load(text)
    op(doc, edit)
    out = io.StringIO()
    _yaml().dump(doc, out)
    return out.getvalue()
