"""`rb graph`: a runbook's DAG as Mermaid or Graphviz DOT."""

from __future__ import annotations

from typing import Annotated

import typer

from rb_cli.resolve import load_checked
from rb_cli.stack import cli_settings
from rb_cli.ui import examples
from rb_common.errors import RbError
from rb_common.model import Runbook

EXAMPLES = examples(
    "rb graph rb-002-disk-pressure                       # Mermaid (paste into Markdown)",
    "rb graph runbooks/rb-001-entity-enrichment --format dot | dot -Tsvg > dag.svg",
)


def _label(runbook: Runbook, step_id: str) -> str:
    step = runbook.step(step_id)
    notes = [step.type]
    if step.when is not None:
        notes.append("when")
    if step.on_failure != "abort":
        notes.append(f"on_failure: {step.on_failure}")
    return f"{step_id} ({', '.join(notes)})".replace('"', "'")


def mermaid(runbook: Runbook) -> str:
    lines = ["flowchart TD"]
    node = {s.id: f"s{i}" for i, s in enumerate(runbook.steps)}
    for step in runbook.steps:
        lines.append(f'  {node[step.id]}["{_label(runbook, step.id)}"]')
    for step in runbook.steps:
        for upstream in step.depends_on:
            lines.append(f"  {node[upstream]} --> {node[step.id]}")
    return "\n".join(lines) + "\n"


def dot(runbook: Runbook) -> str:
    lines = [f'digraph "{runbook.id}" {{', "  rankdir=TB;", "  node [shape=box];"]
    for step in runbook.steps:
        lines.append(f'  "{step.id}" [label="{_label(runbook, step.id)}"];')
    for step in runbook.steps:
        for upstream in step.depends_on:
            lines.append(f'  "{upstream}" -> "{step.id}";')
    return "\n".join(lines) + "\n}\n"


def graph(
    runbook: Annotated[str, typer.Argument(metavar="RUNBOOK", help="runbook file, directory or id")],
    fmt: Annotated[str, typer.Option("--format", metavar="mermaid|dot", help="output format")] = "mermaid",
) -> None:
    """Print the runbook's steps and their depends_on edges as Mermaid (default) or DOT."""
    renderers = {"mermaid": mermaid, "dot": dot}
    if fmt not in renderers:
        raise RbError(f"--format {fmt!r}: choose mermaid or dot")
    _, model = load_checked(runbook, cli_settings().runbooks_dir)
    typer.echo(renderers[fmt](model), nl=False)
