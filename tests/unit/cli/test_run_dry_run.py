"""`rb run --dry-run`: the plan with the given params, nothing run or recorded."""

from __future__ import annotations

import json
import os
from pathlib import Path

from conftest import Rb
from test_errors import one_error_line


def test_the_plan_of_a_runbook_and_nothing_recorded(rb: Rb) -> None:
    code, out, err = rb("run", "rb-002-disk-pressure", "--dry-run", "--json", "-p", "mount=/data")
    assert code == 0, err
    plan = json.loads(out)
    assert plan["order"][0] == "measure" and ["publish_before", "cleanup"] in plan["groups"]
    steps = {s["id"]: s for s in plan["steps"]}
    assert steps["measure"]["inputs"]["command"][-1] == "/data"  # ${params.mount}, evaluated
    assert steps["assess"]["inputs"]["threshold"] == 90  # the parameter's default
    assert "usage" in steps["assess"]["pending"]  # reads a step's outputs: at run time
    assert "measure" in plan["external"] and "assess" not in plan["external"]
    assert not (Path(os.environ["RB_HOME"]) / "executions").exists()


def test_the_text_plan_and_bad_params(rb: Rb) -> None:
    code, out, err = rb("run", "rb-010-approval-gate", "--dry-run", "-p", "zone=eu")
    assert code == 0, err
    assert out.startswith("dry run of rb-010-approval-gate") and "group 2:" in out
    code, out, err = rb("run", "rb-010-approval-gate", "--dry-run")
    assert "zone" in one_error_line(code, out, err)
