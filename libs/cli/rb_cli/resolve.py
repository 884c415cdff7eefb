"""Finding runbooks, fixtures and recorded executions from what the user typed."""

from __future__ import annotations

from pathlib import Path

import yaml

from rb_common.errors import RbError
from rb_common.events import Event
from rb_common.ports import EventStore

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


def find_execution(store: EventStore, ref: str) -> list[Event]:
    """Events of the execution whose id is `ref` or starts with it (unambiguously)."""
    events = store.read(ref) if ref.replace("-", "").isalnum() else []
    if events:
        return events
    matches = [eid for eid in store.execution_ids() if eid.startswith(ref)]
    if len(matches) > 1:
        raise RbError(f"execution id {ref!r} is ambiguous: {', '.join(matches[:5])}")
    if not matches:
        raise RbError(f"no recorded execution {ref!r}")
    return store.read(matches[0])
