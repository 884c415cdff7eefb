"""`rb schema`: its JSON Schema accepts every runbook in runbooks/, rejects the structural
negatives, and leaves the DAG to the validator (a cycle passes the schema, not `rb validate`)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from conftest import REPO, Rb

RUNBOOKS = sorted((REPO / "runbooks").glob("*/runbook.yaml"))

GOOD: dict[str, Any] = {
    "id": "t-schema",
    "name": "schema",
    "version": "1.0.0",
    "steps": [
        {"id": "a", "type": "transform", "inputs": {"x": 1}},
        {"id": "b", "type": "wait", "depends_on": "a", "inputs": {"seconds": "5s"}, "timeout": "1m"},
        {"id": "c", "type": "http", "depends_on": ["b"], "inputs": {"url": "${params.url}"}},
    ],
}


@pytest.fixture
def validator(rb: Rb) -> jsonschema.Draft202012Validator:
    code, out, err = rb("schema")
    assert code == 0, err
    schema = json.loads(out)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_the_runbooks_and_a_good_one_validate(validator: jsonschema.Draft202012Validator) -> None:
    assert len(RUNBOOKS) >= 10
    for path in RUNBOOKS:
        errors = [e.message for e in validator.iter_errors(yaml.safe_load(path.read_text()))]
        assert errors == [], (path, errors)
    assert list(validator.iter_errors(GOOD)) == []


def _bad(change: Any) -> dict[str, Any]:
    doc = copy.deepcopy(GOOD)
    change(doc)
    return doc


NEGATIVES = {
    "unknown top key": lambda d: d.update(colour="red"),
    "unknown step key": lambda d: d["steps"][0].update(color="red"),
    "unknown step type": lambda d: d["steps"][0].update(type="teleport"),
    "unknown input": lambda d: d["steps"][1]["inputs"].update(sekonds=3),
    "missing required input": lambda d: d["steps"][2].update(inputs={"method": "GET"}),
    "missing inputs of a type that needs some": lambda d: d["steps"][2].pop("inputs"),
    "wrong input type": lambda d: d["steps"][2]["inputs"].update(method="FETCH"),
    "bad runbook id": lambda d: d.update(id="Not An Id"),
    "bad step id": lambda d: d["steps"][0].update(id="1-a"),
    "bad version": lambda d: d.update(version="1.0"),
    "no steps": lambda d: d.update(steps=[]),
    "missing name": lambda d: d.pop("name"),
}


@pytest.mark.parametrize("case", sorted(NEGATIVES))
def test_structural_negatives_are_rejected(validator: jsonschema.Draft202012Validator, case: str) -> None:
    assert list(validator.iter_errors(_bad(NEGATIVES[case]))) != [], case


def test_a_cycle_is_the_validators_job(
    validator: jsonschema.Draft202012Validator, rb: Rb, tmp_path: Path
) -> None:
    cyclic = _bad(lambda d: d["steps"][0].update(depends_on=["c"]))
    assert list(validator.iter_errors(cyclic)) == []  # structurally fine
    path = tmp_path / "runbook.yaml"
    path.write_text(yaml.safe_dump(cyclic))
    code, out, _ = rb("validate", str(path))
    assert code == 1 and "cycle" in out, out
    cyclic["steps"][0]["depends_on"] = []
    path.write_text(yaml.safe_dump(cyclic))
    code, out, _ = rb("validate", str(path))
    assert code == 0, out
