"""Following an execution through the API: its events as they are recorded (SSE), until the
terminal one; `rb logs --follow` and `rb trigger --follow/--wait`."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.markup import escape

from rb_cli.api_client import api_url, problem_message, unreachable
from rb_cli.stack import auth_headers
from rb_common.errors import RbError
from rb_common.settings import Settings

TERMINAL = {
    "execution.succeeded": "SUCCEEDED",
    "execution.failed": "FAILED",
    "execution.aborted": "ABORTED",
    "execution.cancelled": "CANCELLED",
}


def print_event(out: Console, event: dict[str, Any]) -> None:
    data = event.get("data") or {}
    what = data.get("step_id") or data.get("name") or data.get("reason") or ""
    extra = f" attempt {data['attempt']}" if (data.get("attempt") or 1) > 1 else ""
    error = f": {data['error']}" if data.get("error") else ""
    out.print(
        f"{event.get('seq', ''):>4} {event.get('time', '')} {event.get('type', ''):<24} "
        f"{escape(str(what))}{extra}{escape(error)}"
    )


def follow(execution_id: str, settings: Settings, out: Console | None) -> str | None:
    """Stream the execution's events (printing them when `out` is given) until the terminal one;
    the final status, or None when the stream ended without one."""
    import httpx

    url = f"{api_url(settings)}/api/v1/executions/{execution_id}/stream"
    final: str | None = None
    try:
        with httpx.stream(
            "GET", url, headers=auth_headers(settings), timeout=httpx.Timeout(10, read=None)
        ) as response:
            if response.status_code >= 400:
                body = response.read()
                try:
                    problem = json.loads(body)
                except ValueError:
                    problem = None
                raise RbError(problem_message(response.status_code, problem, body.decode(errors="replace")))
            for line in response.iter_lines():
                if not line.startswith("data:"):
                    continue
                event = json.loads(line[5:])
                if out is not None:
                    print_event(out, event)
                final = TERMINAL.get(str(event.get("type")), final)
    except httpx.HTTPError as exc:
        raise unreachable(api_url(settings), exc) from None
    return final
