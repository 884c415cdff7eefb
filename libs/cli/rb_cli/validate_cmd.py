"""`rb validate`: every check on runbook files, before anything runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from rb_cli.ui import console, examples
from rb_common.errors import RbError
from rb_common.validator import validate_file

EXAMPLES = examples(
    "rb validate runbooks/                         # every runbook under a directory",
    "rb validate runbooks/rb-002-disk-pressure/runbook.yaml",
)


def runbook_files(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(
                p
                for p in path.rglob("*.y*ml")
                if p.name not in {"acceptance.yml"} and "fixtures" not in p.parts
            )
        elif path.exists():
            files.append(path)
        else:
            raise RbError(f"{path}: no such file or directory")
    return files


def validate(
    paths: Annotated[list[Path], typer.Argument(metavar="PATH...", help="runbook files or directories")],
) -> None:
    """Check runbooks: YAML, keys, step types and inputs, the DAG, references, schemas, cron.
    Exit 0 when all are valid, 1 otherwise."""
    out = console()
    files = runbook_files(paths)
    failed = 0
    for file in files:
        runbook, issues = validate_file(file)
        errors = [i for i in issues if i.level == "error"]
        for issue in issues:
            colour = "red" if issue.level == "error" else "yellow"
            out.print(f"[{colour}]{escape(str(issue))}[/{colour}]")
        if errors:
            failed += 1
        else:
            out.print(
                f"[green]✓[/green] {escape(str(file))}" + (f" ({escape(runbook.id)})" if runbook else "")
            )
    out.print(f"{len(files) - failed} valid, {failed} invalid")
    raise typer.Exit(1 if failed else 0)
