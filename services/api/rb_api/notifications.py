"""What the notifier did for an execution (GET /executions/{id}/notifications), and the
execution's page for people (GET /executions/{id}/page, through a signed link).

Both read the execution's record: the notifier's `notification.sending` (an attempt started),
`notification.retrying` (it failed and is retried at `retry_at`), `notification.sent` and
`notification.failed` events, appended by the coordinator from the inbox.
"""

from __future__ import annotations

import html
from typing import Any

NOTIFICATION_TYPES = (
    "notification.sending",
    "notification.retrying",
    "notification.sent",
    "notification.failed",
)
MAX_ERROR = 300


def notifications(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per (event, channel): its status and each attempt's outcome, in order."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for event in events:
        type_ = event.get("type")
        if type_ not in NOTIFICATION_TYPES:
            continue
        data = event.get("data") or {}
        key = (str(data.get("event_id")), str(data.get("channel")))
        entry = out.setdefault(
            key,
            {
                "event_id": key[0],
                "event_type": data.get("event_type"),
                "on": data.get("on"),
                "channel": key[1],
                "status": "sending",
                "attempts": [],
                "deadline": None,
                "ts": None,
                "thread_ts": None,
                "error": None,
            },
        )
        number = data.get("attempts") or 0
        attempts: list[dict[str, Any]] = entry["attempts"]
        attempt = next((a for a in attempts if a["attempt"] == number), None)
        if attempt is None:
            attempt = {"attempt": number, "started_at": None, "outcome": "unknown"}
            attempts.append(attempt)
        if type_ == "notification.sending":
            attempt["started_at"] = data.get("at")
            entry["deadline"] = entry["deadline"] or data.get("deadline")
            if entry["status"] in ("sending", "retrying"):
                entry["status"] = "sending"
            continue
        if type_ == "notification.retrying":
            attempt.update(outcome="failed", error=data.get("error"), retry_at=data.get("retry_at"))
            if data.get("retry_after") is not None:
                attempt["retry_after"] = data["retry_after"]
            if entry["status"] == "sending":
                entry["status"] = "retrying"
            entry["error"] = data.get("error")
            continue
        if type_ == "notification.sent":
            attempt["outcome"] = "found already sent" if data.get("found") else "sent"
            entry.update(status="sent", ts=data.get("ts"), thread_ts=data.get("thread_ts"), error=None)
            continue
        attempt.update(outcome="refused" if data.get("permanent") else "failed", error=data.get("error"))
        if entry["status"] != "sent":
            entry.update(status="failed", error=data.get("error"), permanent=bool(data.get("permanent")))
    for entry in out.values():
        entry["attempts"].sort(key=lambda a: a["attempt"])
    return list(out.values())


def _text(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _clip(text: Any) -> str:
    value = "" if text is None else str(text)
    return value if len(value) <= MAX_ERROR else value[: MAX_ERROR - 1] + "…"


def page(detail: dict[str, Any], expires_at: str) -> str:
    """The execution as a page: status, steps, times. No inputs, outputs or raw results."""
    steps = "".join(
        "<tr>"
        f"<td>{_text(s.get('id'))}</td><td class='s-{_text(str(s.get('status', '')).lower())}'>{_text(s.get('status'))}</td>"
        f"<td>{_text(s.get('attempts'))}</td><td>{_text(s.get('started_at'))}</td>"
        f"<td>{_text(s.get('completed_at'))}</td><td>{_text(_clip(s.get('error')))}</td>"
        "</tr>"
        for s in detail.get("steps") or []
    )
    rows = [
        ("Runbook", f"{detail.get('runbook_id')} v{detail.get('runbook_version')}"),
        ("Status", detail.get("status")),
        ("Started", detail.get("started_at")),
        ("Completed", detail.get("completed_at")),
    ]
    facts = "".join(f"<tr><th>{_text(k)}</th><td>{_text(v)}</td></tr>" for k, v in rows)
    title = f"{detail.get('runbook_id')}: {detail.get('status')}"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{_text(title)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2rem;max-width:60rem}}table{{border-collapse:collapse}}
th,td{{text-align:left;padding:.25rem .75rem;border-bottom:1px solid #ddd}}.s-failed{{color:#b00}}
.s-succeeded{{color:#070}}small{{color:#666}}</style></head>
<body><h1>{_text(title)}</h1>
<p><small>Execution {_text(detail.get("id"))}</small></p>
<table>{facts}</table>
<h2>Steps</h2>
<table><tr><th>Step</th><th>Status</th><th>Attempts</th><th>Started</th><th>Completed</th><th>Error</th></tr>{steps}</table>
<p><small>This link expires at {_text(expires_at)}.</small></p>
</body></html>
"""
