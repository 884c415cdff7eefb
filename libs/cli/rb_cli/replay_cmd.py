"""`rb replay`: refold recorded events through the coordinator and compare, step by step."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from rb_cli.output import check_line
from rb_cli.resolve import load_checked
from rb_cli.sources import executions_of, load_events
from rb_cli.stack import cli_settings
from rb_cli.ui import console, examples
from rb_common.errors import RbError
from rb_common.loader import referenced_files
from rb_common.secrets import secrets_from_env
from rb_engine.replay import Replayer
from rb_engine.result import canonical_result_json
from rb_engine.runner import PluginExecutor
from rb_engine.steps.registry import default_registry

EXAMPLES = examples(
    "rb replay 3f2a9c                                 # an id or a unique prefix: REPLAY VERIFIED or the deviations",
    "rb replay 3f2a9c --json                          # the canonical result, byte-stable",
    "rb replay 3f2a9c --against runbooks/x/runbook.yaml   # what-if: where would the edited runbook diverge?",
    "rb replay --all --runbook rb-001-entity-enrichment   # every recorded run of a runbook (not rb test's)",
)

Source = Annotated[
    str,
    typer.Option(
        metavar="auto|local|nats|db",
        help="where to read the events: the local logs, JetStream, the recorder database (auto: all)",
    ),
]


def replay(
    execution_id: Annotated[
        str | None,
        typer.Argument(metavar="EXECUTION", help="execution id, or a prefix matching one execution"),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="print the canonical result")] = False,
    against: Annotated[
        Path | None, typer.Option(metavar="FILE", help="what-if: replay against this runbook file")
    ] = None,
    all_runs: Annotated[bool, typer.Option("--all", help="every recorded run of --runbook")] = False,
    runbook: Annotated[
        str | None, typer.Option("--runbook", metavar="ID", help="runbook id, with --all")
    ] = None,
    source: Source = "auto",
    live: Annotated[bool, typer.Option(help="re-run external steps for real and diff their results")] = False,
) -> None:
    """Re-run an execution from its recorded events and compare, step by step (exit 0 verified,
    1 deviating). With --all, every recorded run of a runbook, then a summary line."""
    settings = cli_settings()
    new_definition = None
    if against is not None:
        _, new_definition = load_checked(str(against), settings.runbooks_dir)
        new_files = referenced_files(new_definition, against.parent)
    if all_runs:
        if not runbook:
            raise RbError("--all needs --runbook ID")
        ids = executions_of(settings, runbook)
        if not ids:
            raise RbError(f"no recorded executions of {runbook!r} (local log or recorder database)")
    elif execution_id:
        ids = [execution_id]
    else:
        raise RbError("give an EXECUTION id, or --all --runbook ID")
    replayer = Replayer(
        PluginExecutor(default_registry()), settings, live=live, secrets=secrets_from_env(os.environ)
    )
    out = console()
    failed = 0
    for ref in ids:
        events, where = load_events(ref, settings, source)
        if new_definition is not None:
            requested = events[0]
            data = {**requested.data, "runbook": new_definition.snapshot(), "files": new_files}
            events = [requested.model_copy(update={"data": data}), *events[1:]]
        try:
            report = asyncio.run(replayer.replay(events))
        except ValueError as exc:
            raise RbError(f"execution {ref}: {exc}") from None
        failed += not report.verified
        if json_output:
            sys.stdout.write(canonical_result_json(report.state))
            continue
        _print_replay(out, report, len(events), where, against)
    if all_runs and not json_output:
        colour = "red" if failed else "green"
        out.print(
            f"[{colour}]{len(ids) - failed}/{len(ids)} replays verified[/{colour}]"
            + (f", {failed} deviating" if failed else "")
        )
    raise typer.Exit(1 if failed else 0)


def _print_replay(out: Console, report: Any, count: int, where: str, against: Path | None) -> None:
    what = f" against {against}" if against else ""
    out.print(f"replaying execution {report.execution_id}{what} ({count} events from {where})")
    by_step: dict[str | None, list[str]] = {}
    for deviation in report.deviations:
        by_step.setdefault(deviation.step, []).append(str(deviation))
    for sid in report.steps_checked:
        status = report.state.steps[sid].status.lower()
        check_line(out, sid not in by_step, f"{sid} ({status})")
        for fine, note in report.notes.get(sid, []):
            check_line(out, fine, f"  {note}")
        for line in by_step.get(sid, []):
            out.print(f"      [red]{escape(line)}[/red]")
    for line in by_step.get(None, []):
        out.print(f"  [red]✗ {escape(line)}[/red]")
    if report.verified:
        out.print("[green]REPLAY VERIFIED[/green]")
    else:
        out.print(
            f"[red]REPLAY DEVIATES[/red]: {len(report.deviations)} deviation(s) in "
            f"{', '.join(sorted(s or 'execution' for s in by_step))}"
        )
