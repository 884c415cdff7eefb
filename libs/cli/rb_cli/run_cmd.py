"""`rb run`: a runbook in this process, its progress, KPIs and verdict."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from rb_cli.output import Progress
from rb_cli.resolve import load_checked, read_mapping
from rb_cli.stack import cli_settings
from rb_cli.ui import console, examples, key_values
from rb_engine.engine import run_local
from rb_engine.fixtures import load_fixture
from rb_engine.plan_preview import Plan, preview

EXAMPLES = examples(
    "rb run rb-000-hello -p greeting=hi                        # a runbook by id, under RB_RUNBOOKS_DIR",
    "rb run runbooks/rb-001-entity-enrichment --fixture runbooks/rb-001-entity-enrichment/fixtures/happy.yaml",
    "rb run ./my-runbook.yaml --params-file params.yaml --fact maintenance_window_open=true",
    "rb run rb-002-disk-pressure --dry-run -p mount=/data  # the plan only: order, groups, inputs",
)

Param = Annotated[list[str], typer.Option("--param", "-p", metavar="KEY=VALUE", help="a parameter (repeat)")]
Fact = Annotated[
    list[str], typer.Option("--fact", metavar="NAME=VALUE", help="an assumption's fact (repeat)")
]


def run(
    runbook: Annotated[str, typer.Argument(metavar="RUNBOOK", help="runbook file, directory or id")],
    param: Param = [],  # noqa: B006
    params_file: Annotated[
        Path | None, typer.Option(metavar="FILE", help="JSON or YAML file of parameters")
    ] = None,
    fixture: Annotated[
        Path | None, typer.Option(metavar="FILE", help="stub external steps from this fixture")
    ] = None,
    fact: Fact = [],  # noqa: B006
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="print the plan (order, parallel groups, inputs); run nothing")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="with --dry-run: the plan as JSON")] = False,
) -> None:
    """Run a runbook in this process: each step as it goes, the KPIs against their targets, then
    the final status and the execution id (for `rb replay`). Exit 0 if it succeeds, 1 if not.
    Events are recorded under RB_HOME/executions. With --dry-run, only the plan: nothing runs,
    secrets are never resolved."""
    settings = cli_settings()
    path, model = load_checked(runbook, settings.runbooks_dir)
    params: dict[str, Any] = {}
    if params_file is not None:
        params.update(read_mapping(params_file))
    params.update(key_values(param))
    if dry_run:
        plan = preview(model, params)
        typer.echo(json.dumps(plan.as_json(), indent=2) if as_json else describe(plan), nl=not as_json)
        return
    fx = load_fixture(fixture) if fixture else None
    out = console()
    state = asyncio.run(
        run_local(
            model,
            settings,
            base_dir=path.parent,
            params=params,
            facts=key_values(fact, "--fact"),
            fixture=fx,
            on_event=Progress(out),
        )
    )
    out.print(f"execution id: {state.execution_id}")
    out.print(f"[dim]next: rb replay {state.execution_id[:12]}[/dim]")
    raise typer.Exit(0 if state.status == "SUCCEEDED" else 1)


def describe(plan: Plan) -> str:
    """The plan as text: one block per parallel group, each step with its evaluated inputs."""
    lines = [f"dry run of {plan.runbook_id} {plan.version}: nothing runs, secrets stay unresolved"]
    by_id = {s.id: s for s in plan.steps}
    for n, group in enumerate(plan.groups, 1):
        parallel = f" (in parallel, up to {plan.concurrency})" if len(group) > 1 else ""
        lines.append(f"group {n}{parallel}:")
        for sid in group:
            step = by_id[sid]
            notes = [step.type, "external" if step.external else "internal"]
            if step.when is not None:
                notes.append(f"when: {step.when}")
            lines.append(f"  {sid} ({', '.join(notes)})")
            for key, value in step.inputs.items():
                later = "   # at run time" if key in step.pending else ""
                lines.append(f"    {key}: {json.dumps(value, default=str)}{later}")
    return "\n".join(lines) + "\n"
