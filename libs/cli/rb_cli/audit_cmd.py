"""`rb audit verify` (the hash chain) and `rb fixture export` (a fixture from a real run)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from rb_cli.replay_cmd import Source
from rb_cli.sources import load_events
from rb_cli.stack import cli_settings
from rb_cli.ui import CONTEXT, console, examples, user_errors
from rb_common.audit import audit_record, verify_chain
from rb_common.canonical import canonical_json
from rb_engine.export import export_fixture

Execution = Annotated[str, typer.Argument(metavar="EXECUTION", help="execution id, or a unique prefix")]

audit_app = typer.Typer(
    help="Tamper evidence for recorded executions.", no_args_is_help=True, context_settings=CONTEXT
)
fixture_app = typer.Typer(help="Fixtures for rb test.", no_args_is_help=True, context_settings=CONTEXT)


@audit_app.command("verify", epilog=examples("rb audit verify 3f2a9c", "rb audit verify 3f2a9c --json"))
@user_errors
def audit_verify(
    execution_id: Execution,
    source: Source = "auto",
    json_output: Annotated[bool, typer.Option("--json", help="the audit record as JSON")] = False,
) -> None:
    """Check the hash chain: exit 0 intact, 1 naming each edited, removed, inserted or moved event."""
    settings = cli_settings()
    events, where = load_events(execution_id, settings, source)
    problems = verify_chain(events)
    if json_output:
        record = {
            **audit_record(events),
            "source": where,
            "intact": not problems,
            "problems": [{"seq": p.seq, "event_id": p.event_id, "problem": p.problem} for p in problems],
        }
        sys.stdout.write(json.dumps(record, indent=2, default=str) + "\n")
        raise typer.Exit(1 if problems else 0)
    out = console()
    record = audit_record(events)
    out.print(f"execution {record['execution_id']} ({len(events)} events from {where})")
    out.print(
        f"  runbook {record['runbook_id']} {record['runbook_version']}, actor {record['actor']}, "
        f"legal basis: {record['legal_basis']}"
    )
    for problem in problems:
        out.print(f"  [red]✗ {escape(str(problem))}[/red]")
    if problems:
        out.print(f"[red]AUDIT FAILED[/red]: {len(problems)} problem(s)")
        raise typer.Exit(1)
    out.print(f"[green]AUDIT OK[/green]: hash chain intact, head {record['head_hash']}")


@fixture_app.command("export", epilog=examples("rb fixture export 3f2a9c --out runbooks/x/fixtures/"))
@user_errors
def fixture_export(
    execution_id: Execution,
    out: Annotated[
        Path, typer.Option(metavar="DIR", help="directory for <id>.yaml (fixture) and <id>.json (expected)")
    ] = Path("."),
    source: Source = "auto",
) -> None:
    """Write a fixture (stubs from recorded results, params, facts) and the expected result."""
    import yaml

    settings = cli_settings()
    events, _ = load_events(execution_id, settings, source)
    fixture, expected = export_fixture(events)
    out.mkdir(parents=True, exist_ok=True)
    name = events[0].execution_id[:12]
    fixture_path, expected_path = out / f"{name}.yaml", out / f"{name}.json"
    fixture_path.write_text(yaml.safe_dump(fixture, sort_keys=False, allow_unicode=True), encoding="utf-8")
    expected_path.write_text(canonical_json(expected, indent=2) + "\n", encoding="utf-8")
    console().print(f"wrote {fixture_path} and {expected_path}")
