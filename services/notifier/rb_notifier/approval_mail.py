"""The signed decision link in an approval_requested email (rb_common.approval_links).

Only an email with exactly one recipient (no cc) whose address is listed in the step's
`approvers` carries a link: it decides as `email:<address>`, so nobody else may read it. Others
name the ways to decide (`rb approve`, the API, Slack)."""

from __future__ import annotations

from html import escape

from rb_common.approval_links import signed_url
from rb_notifier.config import NotifierConfig
from rb_notifier.rules import EmailDestination
from rb_notifier.summary import Summary


def decision_link(summary: Summary, target: EmailDestination, config: NotifierConfig) -> str | None:
    approval = summary.approval
    if approval is None or not approval.approval_id or not config.public_url or config.link_key is None:
        return None
    if len(target.to) != 1 or target.cc:
        return None
    address = target.to[0].lower()
    if address not in {a.lower() for a in approval.approvers or []}:
        return None
    return signed_url(config.public_url, approval.approval_id, address, [config.link_key], config.link_ttl)


def with_link(text: str, html: str, link: str | None) -> tuple[str, str]:
    if link is None:
        return text, html
    line = f"Decide (this link is yours and works once): {link}"
    anchor = f'<p><a href="{escape(link)}">Approve or reject</a> (this link is yours and works once)</p>'
    closing = html.rfind("</body>")
    html = html[:closing] + anchor + html[closing:] if closing >= 0 else html + anchor
    return f"{text}\n\n{line}\n", html
