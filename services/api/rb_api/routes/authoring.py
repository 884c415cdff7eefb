"""/api/v1/authoring/*: the console's editor. Each route takes a runbook's YAML text and touches
nothing: `validate` answers the validator's issues (line, step) and the graph the text draws,
`edit` applies one graph edit to the text (comments and key order kept: rb_common.yaml_edit),
`dry-run` answers the plan (rb_engine.plan_preview). Saving is the runbook routes' job."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from rb_api.auth import Viewer
from rb_api.dbutil import in_thread
from rb_api.problems import ProblemError, problem_responses
from rb_common.params import ParamsError
from rb_common.validator import validate_text
from rb_common.yaml_edit import MAX_TEXT, EditError, apply_edit
from rb_common.yaml_graph import graph_of
from rb_engine.plan_preview import PlanError, preview

router = APIRouter(prefix="/api/v1/authoring", tags=["authoring"])
FILE = "runbook.yaml"


class Text(BaseModel):
    model_config = ConfigDict(extra="forbid")

    yaml: str = Field(max_length=MAX_TEXT, description="the runbook's YAML text")


class Edit(Text):
    edit: dict[str, Any] = Field(description="one graph edit: {op: add_step|remove_step|add_edge|...}")


class DryRun(Text):
    params: dict[str, Any] = {}


def _checked(text: str) -> dict[str, Any]:
    runbook, issues = validate_text(text, FILE)
    return {
        "valid": runbook is not None and not any(i.level == "error" for i in issues),
        "issues": [
            {"level": i.level, "line": i.line, "step": i.step, "message": i.message, "text": str(i)}
            for i in issues
        ],
        "graph": graph_of(text),
    }


@router.post("/validate", summary="The validator's issues for a YAML text, and its graph")
async def validate(body: Text, _: Viewer) -> dict[str, Any]:
    return await in_thread(_checked, body.yaml)


def _edited(body: Edit) -> dict[str, Any]:
    try:
        text = apply_edit(body.yaml, body.edit)
    except EditError as exc:
        raise ProblemError(422, str(exc), slug="invalid-edit") from None
    return {"yaml": text, **_checked(text)}


@router.post("/edit", summary="Apply one graph edit to a YAML text", responses=problem_responses(422))
async def edit(body: Edit, _: Viewer) -> dict[str, Any]:
    return await in_thread(_edited, body)


def _plan(body: DryRun) -> dict[str, Any]:
    runbook, issues = validate_text(body.yaml, FILE)
    errors = [str(i) for i in issues if i.level == "error"]
    if runbook is None or errors:
        raise ProblemError(422, "the runbook does not validate: " + "; ".join(errors), slug="invalid-runbook")
    try:
        return preview(runbook, body.params).as_json()
    except (ParamsError, PlanError) as exc:
        raise ProblemError(422, str(exc), slug="invalid-params") from None


@router.post(
    "/dry-run", summary="The plan for a YAML text and params: nothing runs", responses=problem_responses(422)
)
async def dry_run(body: DryRun, _: Viewer) -> dict[str, Any]:
    return await in_thread(_plan, body)
