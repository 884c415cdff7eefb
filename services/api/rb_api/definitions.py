"""Runbook definitions sent to the API: parse the body (YAML or JSON), validate it fully.

Pure: bytes and a content type in, a `Submission` (or a `ProblemError`) out. Syntax errors are
400 with the line; a document that is not a valid runbook is 422 listing every issue as
`{step, message, line, level}`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from rb_api.problems import ProblemError
from rb_common.errors import RunbookLoadError
from rb_common.loader import Location, parse_yaml
from rb_common.model import Runbook
from rb_common.snapshot import SnapshotError, check_size, file_references, missing_files
from rb_common.validator import Issue, validate_runbook

SOURCE_NAME = "<request>"
YAML_TYPES = frozenset(
    {"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "text/plain", ""}
)
JSON_TYPES = frozenset({"application/json", "text/json"})

# For the OpenAPI document: the body of POST/PUT /runbooks.
EXAMPLE_RUNBOOK: dict[str, Any] = {
    "id": "example-runbook",
    "name": "Example runbook",
    "version": "1.0.0",
    "owner": "ops",
    "legal_basis": "Documentation example",
    "steps": [{"id": "greet", "type": "transform", "inputs": {"greeting": "hello"}}],
}
REQUEST_BODY_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "The runbook as YAML (application/yaml, text/yaml) or the same structure as JSON.",
        "content": {
            "application/yaml": {"schema": {"type": "string"}},
            "application/json": {"schema": {"type": "object"}, "example": EXAMPLE_RUNBOOK},
        },
    }
}


@dataclass(frozen=True)
class Submission:
    runbook: Runbook
    definition: dict[str, Any]  # runbook.snapshot(): what execution.requested records
    source: str  # the text as sent
    warnings: list[dict[str, Any]]


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def issue_dict(issue: Issue) -> dict[str, Any]:
    return {"step": issue.step, "message": issue.message, "line": issue.line, "level": issue.level}


def _invalid_body(message: str, line: int | None = None) -> ProblemError:
    return ProblemError(
        400,
        message,
        slug="invalid-body",
        title="Malformed request body",
        errors=[{"step": None, "message": message, "line": line, "level": "error"}],
    )


def _invalid_runbook(errors: list[dict[str, Any]]) -> ProblemError:
    first = errors[0]
    where = f"line {first['line']}: " if first.get("line") else ""
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return ProblemError(
        422,
        f"the runbook is invalid: {where}{first['message']}{more}",
        slug="invalid-runbook",
        title="Invalid runbook",
        errors=errors,
    )


def parse_document(body: bytes, content_type: str | None) -> tuple[Any, dict[Location, int], str]:
    """The document, a location -> line map (may be empty), and the source text."""
    media = media_type(content_type)
    is_json = media in JSON_TYPES or media.endswith("+json")
    is_yaml = media in YAML_TYPES or media.endswith("+yaml")
    if not (is_json or is_yaml):
        raise ProblemError(
            415,
            f"unsupported content type {media!r}: send the runbook as application/yaml or application/json",
            slug="unsupported-media-type",
        )
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _invalid_body(f"the body is not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    if not text.strip():
        raise _invalid_body("empty body: send the runbook as YAML or JSON")
    try:
        if is_json:
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise _invalid_body(f"invalid JSON: {exc.msg} (column {exc.colno})", exc.lineno) from None
            return data, _json_lines(text, data), text
        try:
            data, lines = parse_yaml(text, SOURCE_NAME)
        except RunbookLoadError as exc:
            raise _invalid_body(exc.message, exc.line) from None
        return data, lines, text
    except RecursionError:
        raise _invalid_body("the document is nested too deeply") from None


def _json_lines(text: str, data: Any) -> dict[Location, int]:
    """Line numbers for a JSON body, when YAML reads it as the same document (best effort)."""
    try:
        as_yaml, lines = parse_yaml(text, SOURCE_NAME)
    except Exception:
        return {}
    return lines if as_yaml == data else {}


def _line_of(loc: Location, lines: dict[Location, int]) -> int | None:
    for cut in range(len(loc), -1, -1):
        line = lines.get(loc[:cut])
        if line:
            return line
    return None


def _step_id(data: Any, loc: Location) -> str | None:
    if len(loc) >= 2 and loc[0] == "steps" and isinstance(loc[1], int):
        steps = data.get("steps") if isinstance(data, dict) else None
        if isinstance(steps, list) and loc[1] < len(steps) and isinstance(steps[loc[1]], dict):
            step_id = steps[loc[1]].get("id")
            return step_id if isinstance(step_id, str) else None
    return None


def _describe(loc: Location) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(document)"


def model_issues(data: Any, lines: dict[Location, int]) -> tuple[Runbook | None, list[dict[str, Any]]]:
    """The runbook, or every reason the document is not one (unknown keys, types, ...)."""
    if not isinstance(data, dict):
        return None, [
            {"step": None, "message": "a runbook is a mapping at the top level", "line": 1, "level": "error"}
        ]
    try:
        return Runbook.model_validate(data), []
    except ValidationError as exc:
        issues: list[dict[str, Any]] = []
        for err in exc.errors():
            loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and "[" in p))
            msg = str(err["msg"])
            if err["type"] == "extra_forbidden" and loc:
                msg = f"unknown key {loc[-1]!r}"
            elif err["type"] == "missing" and loc:
                msg = f"missing required key {loc[-1]!r}"
            issues.append(
                {
                    "step": _step_id(data, loc),
                    "message": f"{_describe(loc)}: {msg}",
                    "line": _line_of(loc, lines),
                    "level": "error",
                }
            )
        return None, issues
    except Exception as exc:  # a model bug must not become a 500
        return None, [
            {
                "step": None,
                "message": f"cannot load: {type(exc).__name__}: {exc}",
                "line": None,
                "level": "error",
            }
        ]


def _bundle(data: Any) -> tuple[Any, dict[str, Any]] | None:
    """`{"runbook": <YAML text or object>, "files": {name: text}}`: the runbook and its files."""
    if not (isinstance(data, dict) and set(data) == {"runbook", "files"}):
        return None
    files = data["files"]
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        raise _invalid_body('"files" must map each file name to its text')
    return data["runbook"], files


def _with_files(runbook: Runbook, sent: dict[str, str]) -> tuple[Runbook, list[dict[str, Any]]]:
    """The runbook carrying the texts of every file it references (inline `files` and those sent),
    and warnings for files sent but not referenced; 422 if one is missing or they are too large."""
    available = {**runbook.files, **sent}
    missing = missing_files(runbook, available)
    if missing:
        raise _invalid_runbook(
            [
                {
                    "step": label.split(".", 1)[0],
                    "message": f"{label}: file '{name}' is referenced but was not sent: POST "
                    '{"runbook": <YAML>, "files": {"' + name + '": <text>}} (rb up does)',
                    "line": None,
                    "level": "error",
                }
                for label, name in missing
            ]
        )
    references = file_references(runbook)
    files = {name: available[name] for name in references}
    try:
        check_size(files)
    except SnapshotError as exc:
        raise _invalid_runbook(
            [{"step": None, "message": str(exc), "line": None, "level": "error"}]
        ) from None
    warnings = [
        {
            "step": None,
            "message": f"file '{name}' was sent but no step reads it",
            "line": None,
            "level": "warning",
        }
        for name in sorted(set(sent) - set(references))
    ]
    if files == runbook.files:
        return runbook, warnings
    return runbook.model_copy(update={"files": files}), warnings


def parse_submission(body: bytes, content_type: str | None) -> Submission:
    """Parse and fully validate a runbook body; raises ProblemError (400/415/422).

    The body is the runbook (YAML or JSON), or the JSON `{"runbook": <YAML text or object>,
    "files": {name: text}}` with the files its steps reference (schemas, GraphQL documents). The
    definition stored for the revision carries those files (`Runbook.files`), so every execution
    of the revision reads exactly them (rb_common.snapshot); a referenced file that was not sent
    is an error."""
    data, lines, source = parse_document(body, content_type)
    sent: dict[str, str] = {}
    bundle = _bundle(data)
    if bundle is not None:
        inner, sent = bundle
        if isinstance(inner, str):
            data, lines, source = parse_document(inner.encode(), "application/yaml")
        else:
            data, lines, source = inner, {}, json.dumps(inner, ensure_ascii=False, indent=2)
    runbook, problems = model_issues(data, lines)
    if runbook is None:
        raise _invalid_runbook(problems)
    issues = [issue_dict(i) for i in validate_runbook(runbook, SOURCE_NAME, lines, base_dir=None)]
    errors = [i for i in issues if i["level"] == "error"]
    if errors:
        raise _invalid_runbook(errors)
    runbook, file_warnings = _with_files(runbook, sent)
    return Submission(
        runbook=runbook,
        definition=runbook.snapshot(),
        source=source,
        warnings=[i for i in issues if i["level"] != "error"] + file_warnings,
    )
