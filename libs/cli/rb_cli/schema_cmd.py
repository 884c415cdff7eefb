"""`rb schema`: the JSON Schema of runbook files, for editors (yaml-language-server)."""

from __future__ import annotations

import json

import typer

from rb_cli.ui import examples
from rb_common.runbook_schema import runbook_json_schema

EXAMPLES = examples(
    "rb schema > runbook.schema.json          # then, atop a runbook file:",
    "# yaml-language-server: $schema=./runbook.schema.json",
)


def schema() -> None:
    """Print the JSON Schema of runbook files: keys, step types and each type's inputs. It checks
    structure only; `rb validate` also checks the DAG, expressions and references."""
    typer.echo(json.dumps(runbook_json_schema(), indent=2, sort_keys=False))
