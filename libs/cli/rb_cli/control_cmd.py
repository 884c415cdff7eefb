"""`rb cancel|pause|resume|retry|event`: control of executions through the API (operator role)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.markup import escape

from rb_common.errors import RbError

ExecutionArg = Annotated[str, typer.Argument(help="the execution's id (rb logs, GET /api/v1/executions)")]
ReasonOpt = Annotated[str | None, typer.Option("--reason", help="why, recorded with the command")]


def _post(path: str, body: dict[str, Any] | None = None) -> Any:
    from rb_cli.main import _api, _call
    from rb_cli.stack import cli_settings

    settings = cli_settings()
    return _call("POST", f"{_api(settings)}{path}", settings, json=body)


def _control(execution_id: str, action: str, reason: str | None) -> None:
    from rb_cli.main import _console

    _post(f"/api/v1/executions/{execution_id}/{action}", {"reason": reason} if reason else None)
    _console().print(f"{action} requested for {escape(execution_id)}")


def cancel(execution_id: ExecutionArg, reason: ReasonOpt = None) -> None:
    """Cancel a running execution: running steps are stopped, nothing new starts.

    Example: rb cancel 3f2a9c --reason "wrong cluster"
    """
    _control(execution_id, "cancel", reason)


def pause(execution_id: ExecutionArg, reason: ReasonOpt = None) -> None:
    """Pause a running execution: running steps finish, nothing new starts until resumed.

    Example: rb pause 3f2a9c
    """
    _control(execution_id, "pause", reason)


def resume(execution_id: ExecutionArg, reason: ReasonOpt = None) -> None:
    """Resume a paused execution.

    Example: rb resume 3f2a9c
    """
    _control(execution_id, "resume", reason)


def retry(
    execution_id: ExecutionArg,
    step_id: Annotated[str, typer.Argument(help="the step that failed")],
    reason: ReasonOpt = None,
) -> None:
    """Run a failed step of a FAILED execution again, with the steps that depend on it; the
    other steps keep their outputs and the execution's record goes on.

    Example: rb retry 3f2a9c restart --reason "the node is back"
    """
    from rb_cli.main import _console

    _post(f"/api/v1/executions/{execution_id}/steps/{step_id}/retry", {"reason": reason} if reason else None)
    _console().print(f"retry of {escape(step_id)} requested for {escape(execution_id)}")


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

    Example: rb event deploy.finished --correlation CHG-1042 --data '{"status": "ok"}'
    """
    from rb_cli.main import _console

    try:
        parsed = json.loads(data) if data is not None else None
    except ValueError as exc:
        raise RbError(f"--data is not JSON: {exc}") from None
    body = {"subject": subject, "correlation": correlation, "data": parsed, "id": event_id}
    result = _post("/api/v1/events", {k: v for k, v in body.items() if v is not None})
    _console().print(f"sent event {escape(str(result.get('id')))} ({escape(subject)})")


def register(app: typer.Typer) -> None:
    from rb_cli.main import user_errors

    for name, command in (
        ("cancel", cancel),
        ("pause", pause),
        ("resume", resume),
        ("retry", retry),
        ("event", event),
    ):
        app.command(name)(user_errors(command))
