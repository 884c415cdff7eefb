"""What an execution starts from: the one builder of `execution.requested`, files included.

Steps may name files (a `schema_check` schema, an `api_call` GraphQL document). What they read
must not depend on where a worker runs, so every execution records the texts of those files in
its first event (`files`) and steps read them from there:

- a local run (`rb run`, `rb test`) reads them next to the runbook file (`base_dir`);
- a registered runbook carries them in its definition (`Runbook.files`): registration stores the
  files sent with the runbook (`rb up` sends them; see `registration_body`) and refuses a
  runbook whose referenced files are missing, so the API, the scheduler's cron fires, the alert
  router and webhook triggers start from exactly the files of the revision they run.

A file named by an expression (`schema: "${params.schema}"`) cannot be known in advance and is
not snapshotted; such a step reads the disk of whoever runs it.

The snapshot is capped (MAX_SNAPSHOT_BYTES), well under NATS's default 1 MB message limit: a
larger one is a SnapshotError (an RbError: exit 2 in the CLI, 422 problem in the API).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rb_common.errors import RbError, RunbookLoadError
from rb_common.model import Runbook

MAX_SNAPSHOT_BYTES = 512 * 1024
_GRAPHQL_SUFFIXES = (".graphql", ".gql")


class SnapshotError(RbError):
    """The referenced files are too large to travel with an execution."""


def _file_name(step_type: str, inputs: dict[str, Any]) -> str | None:
    """The runbook-relative file a step reads, as its plugin decides (None: inline or dynamic)."""
    if step_type == "schema_check":
        name = inputs.get("schema")
        if isinstance(name, str) and "${" not in name and "\n" not in name and name.strip():
            return name
    elif step_type == "api_call":
        query = inputs.get("query")
        if isinstance(query, str) and "${" not in query and query.strip().lower().endswith(_GRAPHQL_SUFFIXES):
            return query.strip()
    return None


def file_references(runbook: Runbook) -> dict[str, str]:
    """File name -> the first step (or `<step>.rollback`) that reads it, in step order."""
    refs: dict[str, str] = {}
    for step in runbook.steps:
        blocks = [(step.id, step.type, step.inputs)]
        if step.rollback is not None:
            blocks.append((f"{step.id}.rollback", step.rollback.type, step.rollback.inputs))
        for label, step_type, inputs in blocks:
            name = _file_name(step_type, inputs)
            if name is not None:
                refs.setdefault(name, label)
    return refs


def snapshot_size(files: dict[str, str]) -> int:
    return sum(len(name.encode()) + len(text.encode()) for name, text in files.items())


def check_size(files: dict[str, str]) -> None:
    size = snapshot_size(files)
    if size > MAX_SNAPSHOT_BYTES:
        largest = max(files, key=lambda name: len(files[name].encode()))
        raise SnapshotError(
            f"the files the runbook references are {size} bytes, over the {MAX_SNAPSHOT_BYTES}-byte "
            f"limit of what an execution carries (largest: {largest}, {len(files[largest].encode())} bytes)"
        )


def snapshot_files(runbook: Runbook, base_dir: Path | None) -> dict[str, str]:
    """The texts of the referenced files: the runbook's own (`files`) first, then, for a runbook
    read from disk, the files next to it. A file that exists nowhere is left out (the step fails
    naming it when it runs); over the cap is a SnapshotError."""
    files: dict[str, str] = {}
    for name in file_references(runbook):
        if name in runbook.files:
            files[name] = runbook.files[name]
        elif base_dir is not None:
            path = base_dir / name
            if path.is_file():
                try:
                    files[name] = path.read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError) as exc:
                    raise RunbookLoadError(str(path), f"cannot read: {exc}") from None
    check_size(files)
    return files


def missing_files(runbook: Runbook, files: dict[str, str]) -> list[tuple[str, str]]:
    """(step, name) of every referenced file that `files` lacks."""
    return [(label, name) for name, label in file_references(runbook).items() if name not in files]


def requested_data(
    runbook: Runbook,
    *,
    params: dict[str, Any],
    env: dict[str, Any] | None = None,
    trigger: dict[str, Any] | None = None,
    facts: dict[str, Any] | None = None,
    actor: str,
    legal_basis: str | None = None,
    concurrency: int | None = None,
    files: dict[str, str] | None = None,
    base_dir: Path | None = None,
    parent: dict[str, Any] | None = None,
    depth: int | None = None,
) -> dict[str, Any]:
    """The data of `execution.requested` (and of the TriggerRequest that asks for it), for every
    starter: `files` when the caller has them already, else the snapshot of the runbook's own
    files and those next to it in `base_dir`. The definition is recorded without its files: they
    are the event's `files`, once."""
    if files is None:
        files = snapshot_files(runbook, base_dir)
    else:
        check_size(files)
    definition = runbook.snapshot()
    definition.pop("files", None)
    return {
        "runbook": definition,
        "params": params,
        "env": dict(env or {}),
        "trigger": dict(trigger or {}),
        "facts": dict(facts or {}),
        "actor": actor,
        "legal_basis": legal_basis or runbook.legal_basis,
        "concurrency": concurrency,
        "files": dict(files),
        # A sub-runbook's run only: who started it, and how deep it is.
        **({"parent": dict(parent), "depth": depth} if parent is not None else {}),
        # `wait` steps are timers in the coordinator (recordings without this key ran them on
        # workers, and replay keeps deciding them that way).
        "waits": "timers",
        # A wind-down skips the pending steps in one `steps.skipped` event (recordings without
        # this key skipped them one `step.skipped` each, and replay keeps deciding them so).
        "wind_down": "together",
    }


def registration_body(path: Path) -> tuple[bytes, str]:
    """What to POST to /api/v1/runbooks for the runbook file at `path`: the YAML as it is when it
    references no file, else `{"runbook": <YAML text>, "files": {name: text}}` as JSON with the
    referenced files read next to it. Over the cap is a SnapshotError."""
    import json

    from rb_common.loader import load_runbook_text

    text = path.read_text(encoding="utf-8")
    try:
        runbook, _ = load_runbook_text(text, str(path))
    except RbError:
        return text.encode(), "application/yaml"  # the API names what is wrong with it
    if not file_references(runbook):
        return text.encode(), "application/yaml"
    files = snapshot_files(runbook, path.parent)
    body = json.dumps({"runbook": text, "files": files}, ensure_ascii=False)
    return body.encode(), "application/json"
