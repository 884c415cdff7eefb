"""`rb approvals`, `rb approve ID`, `rb reject ID`: approval steps through the API, with the
CLI's credentials (RB_API_KEY, else RB_HOME/admin.key)."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any
from urllib.parse import quote

import typer
from rich.markup import escape

from rb_cli.api_client import call
from rb_cli.stack import cli_settings
from rb_cli.ui import console as _console
from rb_cli.ui import examples
from rb_common.errors import RbError

STATUSES = ("pending", "approved", "rejected", "timed_out", "cancelled")

APPROVALS_EXAMPLES = examples(
    "rb approvals                                    # what waits for a decision",
    "rb approvals --status approved --json",
)
APPROVE_EXAMPLES = examples('rb approve 3f2a9c:gate -m "checked the change ticket"')
REJECT_EXAMPLES = examples('rb reject 3f2a9c:gate -m "not during peak traffic"')


def approvals_list(
    status: Annotated[
        str,
        typer.Option(
            metavar="STATUS", help="which approvals: pending, approved, rejected, timed_out or cancelled"
        ),
    ] = "pending",
    limit: Annotated[int, typer.Option(metavar="N", help="show at most this many, newest first")] = 50,
    json_output: Annotated[
        bool, typer.Option("--json", help="print the API's JSON instead of a table")
    ] = False,
) -> None:
    """List approval steps waiting for a decision (or decided ones, with --status)."""
    if status not in STATUSES:
        raise RbError(f"--status is one of {', '.join(STATUSES)}, got {status!r}")
    settings = cli_settings()
    result = call("GET", "/api/v1/approvals", settings, params={"status": status, "limit": limit})
    items: list[dict[str, Any]] = result.get("items", [])
    if json_output:
        sys.stdout.write(json.dumps(items, indent=2) + "\n")
        return
    console = _console()
    for item in items:
        console.print(
            f"{escape(item['id'])}  {item['status']}  {escape(item['runbook_id'] or '-')}  "
            f"requested {item['requested_at']} by {escape(item['requested_by'] or '-')}"
        )
        if item.get("prompt"):
            console.print(f"    {escape(item['prompt'])}")
        needs = f"needs {item['min_approvals']} of: {', '.join(item['approvers'])}"
        if item.get("require_comment"):
            needs += "; a comment is required"
        if item.get("timeout_at"):
            needs += f"; at {item['timeout_at']}: {item['timeout_action']}"
        console.print(f"    {escape(needs)}")
        for decision in item.get("decisions") or []:
            said = f": {decision['comment']}" if decision.get("comment") else ""
            console.print(f"    {escape(decision['actor'])} {decision['decision']}d{escape(said)}")
    console.print(f"{len(items)} {status} approval(s)")


def _decide(approval_id: str, decision: str, comment: str | None) -> None:
    settings = cli_settings()
    path = f"/api/v1/approvals/{quote(approval_id, safe=':')}/{decision}"
    result = call("POST", path, settings, json={"comment": comment} if comment else {})
    verb = "approved" if decision == "approve" else "rejected"
    _console().print(
        f"{verb} {escape(result['approval_id'])} as {escape(result['actor'])} (sent to the executor)"
    )


Comment = Annotated[
    str | None, typer.Option("--comment", "-m", metavar="TEXT", help="why; some approval steps require one")
]
ApprovalId = Annotated[str, typer.Argument(metavar="ID", help="the approval's id, as rb approvals shows it")]


def approve(approval_id: ApprovalId, comment: Comment = None) -> None:
    """Approve an approval step (not as the execution's requester or the runbook's author)."""
    _decide(approval_id, "approve", comment)


def reject(approval_id: ApprovalId, comment: Comment = None) -> None:
    """Reject an approval step: the step fails and its on_failure applies."""
    _decide(approval_id, "reject", comment)
