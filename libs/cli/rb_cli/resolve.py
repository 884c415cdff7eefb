"""Finding runbooks and reading the files the user names (recorded executions: `sources`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from rb_common.errors import RbError
from rb_common.model import Runbook
from rb_common.validator import validate_file

RUNBOOK_FILE = "runbook.yaml"


def resolve_runbook(ref: str, runbooks_dir: Path) -> Path:
    """RUNBOOK is a file, a directory holding runbook.yaml, or an id under RB_RUNBOOKS_DIR."""
    path = Path(ref)
    if path.is_file():
        return path
    if path.is_dir() and (path / RUNBOOK_FILE).is_file():
        return path / RUNBOOK_FILE
    for candidate in (
        runbooks_dir / ref / RUNBOOK_FILE,
        runbooks_dir / f"{ref}.yaml",
        runbooks_dir / f"{ref}.yml",
    ):
        if candidate.is_file():
            return candidate
    if runbooks_dir.is_dir():
        for candidate in sorted(runbooks_dir.rglob("*.y*ml")):
            if _declares_id(candidate, ref):
                return candidate
    raise RbError(f"no runbook {ref!r}: not a file, and no runbook with that id under {runbooks_dir}")


def _declares_id(path: Path, runbook_id: str) -> bool:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return False
    return isinstance(data, dict) and data.get("id") == runbook_id and "steps" in data


def load_checked(ref: str, runbooks_dir: Path) -> tuple[Path, Runbook]:
    """The runbook RUNBOOK names, validated: an invalid one is a usage error naming its issues."""
    path = resolve_runbook(ref, runbooks_dir)
    runbook, issues = validate_file(path)
    errors = [i for i in issues if i.level == "error"]
    if errors or runbook is None:
        raise RbError(f"invalid runbook (rb validate {path}): " + "; ".join(str(i) for i in errors))
    return path, runbook


def read_mapping(path: Path) -> dict[str, Any]:
    """A JSON or YAML file holding a mapping (params, an alert event)."""
    import json

    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except OSError as exc:
        raise RbError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except (ValueError, yaml.YAMLError) as exc:
        raise RbError(f"{path}: not valid JSON/YAML: {exc}") from None
    if not isinstance(data, dict):
        raise RbError(f"{path}: expected a mapping of names to values")
    return data
