"""`rb executions`, `rb logs`, `rb alerts`: what the running stack recorded, through the API."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from rich.markup import escape

from rb_cli.api_client import call, resolve_remote_execution
from rb_cli.follow import follow, print_event
from rb_cli.stack import cli_settings
from rb_cli.ui import console, examples

EXECUTIONS_EXAMPLES = examples(
    "rb executions                                   # the 20 most recent",
    "rb executions --runbook rb-000-hello --status FAILED --limit 5",
)
LOGS_EXAMPLES = examples(
    "rb logs 3f2a9c                                  # the recorded events (an id or a unique prefix)",
    "rb logs 3f2a9c --follow                         # live, until the run ends",
)
ALERTS_EXAMPLES = examples(
    "rb alerts --unmatched                           # alerts that started nothing, and why",
    "rb alerts --source alertmanager --status firing --json",
)

Json = Annotated[bool, typer.Option("--json", help="print the API's JSON answer")]
Limit = Annotated[int, typer.Option(metavar="N", help="how many")]

HEADER = f"{'EXECUTION':<32}  {'RUNBOOK':<32} {'STATUS':<16} STARTED"


def executions(
    runbook_id: Annotated[
        str | None, typer.Option("--runbook", metavar="ID", help="only this runbook")
    ] = None,
    status: Annotated[
        str | None, typer.Option(metavar="STATUS", help="only this status (SUCCEEDED, FAILED, RUNNING, ...)")
    ] = None,
    limit: Limit = 20,
    json_output: Json = False,
) -> None:
    """Recent executions, newest first, from the API."""
    settings = cli_settings()
    query = {k: v for k, v in {"runbook_id": runbook_id, "status": status, "limit": limit}.items() if v}
    result = call("GET", "/api/v1/executions", settings, params=query)
    if json_output:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
        return
    out = console()
    items = result.get("items", [])
    if items:
        out.print(HEADER)
    for item in items:
        out.print(
            f"{item['id']:<32}  {item['runbook_id']:<32} {item['status']:<16} {item.get('started_at') or '-'}"
        )
    out.print(f"{len(items)} of {result.get('total', 0)}")


def logs(
    execution_id: Annotated[
        str, typer.Argument(metavar="EXECUTION", help="execution id, or a unique prefix")
    ],
    follow_run: Annotated[
        bool, typer.Option("--follow", "-f", help="stream events until the run ends")
    ] = False,
) -> None:
    """The events of an execution from the API; --follow streams them live (SSE) and exits with
    the run's status (0 succeeded, 1 not)."""
    settings = cli_settings()
    out = console()
    execution_id = resolve_remote_execution(execution_id, settings)
    if not follow_run:
        for event in call("GET", f"/api/v1/executions/{execution_id}/events", settings)["items"]:
            print_event(out, event)
        return
    final = follow(execution_id, settings, out)
    raise typer.Exit(0 if final == "SUCCEEDED" else 1)


def alerts(
    source: Annotated[
        str | None, typer.Option(metavar="SOURCE", help="only this source (alertmanager, grafana, ...)")
    ] = None,
    status: Annotated[str | None, typer.Option(metavar="firing|resolved", help="firing or resolved")] = None,
    matched: Annotated[
        bool | None, typer.Option("--matched/--unmatched", help="only alerts that started runbooks / none")
    ] = None,
    limit: Limit = 20,
    offset: Annotated[int, typer.Option(metavar="N", help="skip this many")] = 0,
    json_output: Json = False,
) -> None:
    """Recent alerts as the trigger router handled them, newest first: the executions each
    started, or why it started nothing."""
    settings = cli_settings()
    query: dict[str, Any] = {"limit": limit, "offset": offset}
    query.update({k: v for k, v in {"source": source, "status": status}.items() if v})
    if matched is not None:
        query["matched"] = "true" if matched else "false"
    result = call("GET", "/api/v1/alerts", settings, params=query)
    if json_output:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
        return
    out = console()
    for item in result.get("items", []):
        if item.get("matched"):
            outcome = "-> " + ", ".join(
                f"{m.get('runbook_id')} {m.get('execution_id')}"
                for m in item.get("matches", [])
                if not m.get("refused")
            )
        else:
            outcome = f"unmatched: {item.get('reason') or '-'}"
        out.print(
            f"{item.get('received_at') or '-'}  {item['source']:<12} {item['status']:<8} "
            f"{escape(str(item.get('summary') or item.get('name') or item['dedupe_id']))[:60]}  {escape(outcome)}"
        )
    out.print(f"{len(result.get('items', []))} of {result.get('total', 0)}")
