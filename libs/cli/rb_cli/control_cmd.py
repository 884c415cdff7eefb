"""`rb cancel|pause|resume|retry|event`: control of executions through the API (operator role)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.markup import escape

from rb_cli.api_client import call
from rb_cli.stack import cli_settings
from rb_cli.ui import console, examples
from rb_common.errors import RbError

CANCEL_EXAMPLES = examples('rb cancel 3f2a9c --reason "wrong cluster"')
PAUSE_EXAMPLES = examples("rb pause 3f2a9c")
RESUME_EXAMPLES = examples("rb resume 3f2a9c")
RETRY_EXAMPLES = examples('rb retry 3f2a9c restart --reason "the node is back"')
EVENT_EXAMPLES = examples("rb event deploy.finished --correlation CHG-1042 --data '{\"status\": \"ok\"}'")

ExecutionArg = Annotated[str, typer.Argument(help="the execution's id (rb logs, GET /api/v1/executions)")]
ReasonOpt = Annotated[str | None, typer.Option("--reason", help="why, recorded with the command")]


def _post(path: str, body: dict[str, Any] | None = None) -> Any:
    return call("POST", path, cli_settings(), json=body)


def _control(execution_id: str, action: str, reason: str | None) -> None:
    _post(f"/api/v1/executions/{execution_id}/{action}", {"reason": reason} if reason else None)
    console().print(f"{action} requested for {escape(execution_id)}")


def cancel(execution_id: ExecutionArg, reason: ReasonOpt = None) -> None:
    """Cancel a running execution: running steps are stopped, nothing new starts.
    """
    _control(execution_id, "cancel", reason)


def pause(execution_id: ExecutionArg, reason: ReasonOpt = None) -> None:
    """Pause a running execution: running steps finish, nothing new starts until resumed.
    """
    _control(execution_id, "pause", reason)


def resume(execution_id: ExecutionArg, reason: ReasonOpt = None) -> None:
    """Resume a paused execution.
    """
    _control(execution_id, "resume", reason)


def retry(
    execution_id: ExecutionArg,
    step_id: Annotated[str, typer.Argument(help="the step that failed")],
    reason: ReasonOpt = None,
) -> None:
    """Run a failed step of a FAILED execution again, with the steps that depend on it; the
    other steps keep their outputs and the execution's record goes on.
    """
    _post(f"/api/v1/executions/{execution_id}/steps/{step_id}/retry", {"reason": reason} if reason else None)
    console().print(f"retry of {escape(step_id)} requested for {escape(execution_id)}")


def event(
    subject: Annotated[str, typer.Argument(help="what happened, dotted (deploy.finished)")],
    correlation: Annotated[
        str | None, typer.Option("--correlation", help="which waiting step it is for (its correlation)")
    ] = None,
    data: Annotated[str | None, typer.Option("--data", help="the event's data, as JSON")] = None,
    event_id: Annotated[
        str | None, typer.Option("--id", help="your event id: a repeated one is dropped")
    ] = None,
) -> None:
    """Send an outside event to the wait_for_event steps waiting for its subject and correlation.
    """
    try:
        parsed = json.loads(data) if data is not None else None
    except ValueError as exc:
        raise RbError(f"--data is not JSON: {exc}") from None
    body = {"subject": subject, "correlation": correlation, "data": parsed, "id": event_id}
    result = _post("/api/v1/events", {k: v for k, v in body.items() if v is not None})
    console().print(f"sent event {escape(str(result.get('id')))} ({escape(subject)})")
