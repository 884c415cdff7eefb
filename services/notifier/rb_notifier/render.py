"""A Summary as a Slack Block Kit message, an email (subject, text, HTML) and a webhook body.

Pure: the same content in every form, nothing read from outside the summary.
"""

from __future__ import annotations

import html
from dataclasses import asdict
from typing import Any

from rb_notifier.summary import KpiLine, Summary, format_duration

EMOJI = {
    "started": ":arrow_forward:",
    "succeeded": ":white_check_mark:",
    "failed": ":x:",
    "aborted": ":no_entry:",
    "cancelled": ":black_square_for_stop:",
    "approval_requested": ":raised_hand:",
}
SLACK_TEXT_LIMIT = 2900  # a section's text may hold 3000 characters
SLACK_HEADER_LIMIT = 150


def rows(s: Summary) -> list[tuple[str, str]]:
    """The label/value facts every form shows."""
    out = [
        ("Runbook", f"{s.runbook_name} ({s.runbook_id} v{s.runbook_version})"),
        ("Status", s.status),
        ("Duration", format_duration(s.duration_seconds)),
        ("Triggered by", s.triggered_by),
        ("Environment", s.environment),
    ]
    if s.steps:
        out.append(("Steps", s.steps))
    if s.owner:
        out.append(("Owner", s.owner))
    out.append(("Execution", s.execution_id))
    return out


def kpi_text(k: KpiLine) -> str:
    text = f"{k.name} = {k.value}"
    if k.target:
        text += f" (target {k.target})"
    if k.error:
        text += f": {k.error}"
    return text


def _kpi_mark(k: KpiLine) -> str:
    return "ok" if k.ok else "BREACHED" if k.ok is False else "recorded"


def failed_step_text(s: Summary) -> str | None:
    if not s.failed_step:
        return None
    after = f" (after {s.failed_step_attempts} attempts)" if s.failed_step_attempts > 1 else ""
    return f"{s.failed_step}{after}"


def approval_text(s: Summary) -> str | None:
    a = s.approval
    if a is None:
        return None
    parts = [f"step {a.step_id}" + (f": {a.description}" if a.description else "")]
    if a.approvers:
        parts.append("approvers: " + ", ".join(a.approvers))
    if a.min_approvals:
        parts.append(f"needs {a.min_approvals} approval(s)")
    if a.timeout:
        parts.append(f"times out after {a.timeout}")
    if a.message:
        parts.append(a.message)
    return "; ".join(parts)


# -- Slack ------------------------------------------------------------------------------------


def _esc(text: str) -> str:
    """Slack mrkdwn control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": _clip(text, SLACK_TEXT_LIMIT)}


def slack_text(s: Summary) -> str:
    """The notification/fallback text of the Slack message."""
    text = s.headline
    if s.failed_step:
        attempts = f" after {s.failed_step_attempts} attempts" if s.failed_step_attempts > 1 else ""
        text += f": step {s.failed_step} failed{attempts}"
    elif s.approval:
        text += f": step {s.approval.step_id}"
    elif s.reason:
        text += f": {s.reason}"
    return _esc(_clip(text, 300))


APPROVAL_BLOCK = "rb_approval"  # the API's chat.update replaces this block with the outcome


def approval_buttons(approval_id: str) -> dict[str, Any]:
    """Approve / Reject: Slack posts the click to the API's /api/v1/slack/interactivity."""

    def button(label: str, action: str, style: str) -> dict[str, Any]:
        return {
            "type": "button",
            "text": {"type": "plain_text", "text": label},
            "style": style,
            "action_id": action,
            "value": approval_id,
        }

    return {
        "type": "actions",
        "block_id": APPROVAL_BLOCK,
        "elements": [button("Approve", "rb_approve", "primary"), button("Reject", "rb_reject", "danger")],
    }


def slack_blocks(s: Summary) -> list[dict[str, Any]]:
    header = f"{s.headline}"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _clip(header, SLACK_HEADER_LIMIT)}},
        {
            "type": "section",
            "text": _mrkdwn(f"{EMOJI.get(s.trigger, '')} *{_esc(s.status)}*".strip()),
            "fields": [_mrkdwn(f"*{label}*\n{_esc(value)}") for label, value in rows(s)][:10],
        },
    ]
    if s.failed_step:
        after = f" (after {s.failed_step_attempts} attempts)" if s.failed_step_attempts > 1 else ""
        body = f"*Failed step:* `{_esc(s.failed_step)}`{after}"
        if s.error:
            body += f"\n```{_esc(_clip(s.error, 2000))}```"
        blocks.append({"type": "section", "text": _mrkdwn(body)})
    if s.reason:
        blocks.append({"type": "section", "text": _mrkdwn(f"*Reason:* {_esc(s.reason)}")})
    approval = approval_text(s)
    if approval:
        blocks.append({"type": "section", "text": _mrkdwn(f"*Approval requested:* {_esc(approval)}")})
    if s.approval is not None and s.approval.approval_id:
        blocks.append(approval_buttons(s.approval.approval_id))
    if s.kpis:
        marks = {"ok": ":white_check_mark:", "BREACHED": ":x:", "recorded": ":small_blue_diamond:"}
        lines = [f"{marks[_kpi_mark(k)]} {_esc(kpi_text(k))}" for k in s.kpis]
        blocks.append({"type": "section", "text": _mrkdwn("*KPIs*\n" + "\n".join(lines))})
    if s.link:
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "View execution"},
                        "url": s.link,
                        "action_id": "rb_view_execution",
                    }
                ],
            }
        )
    blocks.append(
        {
            "type": "context",
            "elements": [
                _mrkdwn(
                    f"execution `{_esc(s.execution_id)}` · {_esc(s.event_type)} · "
                    f"{s.event_time.isoformat(timespec='seconds')}"
                )
            ],
        }
    )
    return blocks


# -- Email ------------------------------------------------------------------------------------


def email_subject(s: Summary) -> str:
    label = "APPROVAL NEEDED" if s.trigger == "approval_requested" else s.status
    subject = f"[rb] {label}: {s.runbook_name}"
    if s.failed_step:
        subject += f" (step {s.failed_step})"
    elif s.approval:
        subject += f" (step {s.approval.step_id})"
    return subject.replace("\r", " ").replace("\n", " ")


def email_text(s: Summary) -> str:
    width = max(len(label) for label, _ in rows(s)) + 2
    lines = [s.headline, "=" * len(s.headline), ""]
    lines += [f"{label + ':':<{width}}{value}" for label, value in rows(s)]
    step = failed_step_text(s)
    if step:
        lines += ["", f"Failed step: {step}"]
        if s.error:
            lines += ["Error:", *("    " + line for line in s.error.splitlines())]
    if s.reason:
        lines += ["", f"Reason: {s.reason}"]
    approval = approval_text(s)
    if approval:
        lines += ["", f"Approval requested: {approval}"]
    if s.kpis:
        lines += ["", "KPIs:"]
        lines += [f"  [{_kpi_mark(k)}] {kpi_text(k)}" for k in s.kpis]
    if s.link:
        lines += ["", f"View the execution: {s.link}"]
    return "\n".join(lines) + "\n"


def email_html(s: Summary) -> str:
    e = html.escape
    out = [
        '<!DOCTYPE html><html><body style="font-family: sans-serif">',
        f"<h2>{e(s.headline)}</h2>",
        '<table cellpadding="4" style="border-collapse: collapse">',
    ]
    out += [f'<tr><th align="left">{e(label)}</th><td>{e(value)}</td></tr>' for label, value in rows(s)]
    out.append("</table>")
    step = failed_step_text(s)
    if step:
        out.append(f"<h3>Failed step: <code>{e(step)}</code></h3>")
        if s.error:
            out.append(f"<pre>{e(s.error)}</pre>")
    if s.reason:
        out.append(f"<p><b>Reason:</b> {e(s.reason)}</p>")
    approval = approval_text(s)
    if approval:
        out.append(f"<p><b>Approval requested:</b> {e(approval)}</p>")
    if s.kpis:
        out.append("<h3>KPIs</h3><ul>")
        out += [f"<li>[{_kpi_mark(k)}] {e(kpi_text(k))}</li>" for k in s.kpis]
        out.append("</ul>")
    if s.link:
        out.append(f'<p><a href="{e(s.link, quote=True)}">View the execution</a></p>')
    out.append("</body></html>")
    return "\n".join(out) + "\n"


# -- Webhook ----------------------------------------------------------------------------------


def webhook_payload(s: Summary) -> dict[str, Any]:
    return {
        "event": s.trigger,
        "event_id": s.event_id,
        "event_type": s.event_type,
        "time": s.event_time.isoformat(),
        "execution_id": s.execution_id,
        "runbook": {
            "id": s.runbook_id,
            "name": s.runbook_name,
            "version": s.runbook_version,
            "environment": s.environment,
        },
        "status": s.status,
        "headline": s.headline,
        "duration_seconds": s.duration_seconds,
        "triggered_by": s.triggered_by,
        "failed_step": (
            {"id": s.failed_step, "attempts": s.failed_step_attempts, "error": s.error}
            if s.failed_step
            else None
        ),
        "reason": s.reason,
        "kpis": [asdict(k) for k in s.kpis or []],
        "kpis_breached": s.kpis_breached or [],
        "approval": asdict(s.approval) if s.approval else None,
        "link": s.link,
        "text": email_text(s),
    }
