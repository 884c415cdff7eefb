"""Which events notify whom: pure matching of a runbook's `notify:` rules."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from rb_common.model import NotifyEvent, NotifyRule, SlackTarget

# Execution event type -> the name a `notify: on:` list uses for it.
EVENT_TRIGGERS: dict[str, NotifyEvent] = {
    "execution.started": "started",
    "execution.succeeded": "succeeded",
    "execution.failed": "failed",
    "execution.aborted": "aborted",
    "execution.cancelled": "cancelled",
    "approval.requested": "approval_requested",
}


def trigger_of(event_type: str) -> NotifyEvent | None:
    """The notify trigger an event type stands for, or None if no rule can match it."""
    return EVENT_TRIGGERS.get(str(event_type))


@dataclass(frozen=True)
class SlackDestination:
    channel: str

    @property
    def key(self) -> str:
        return f"slack:{self.channel}"


@dataclass(frozen=True)
class EmailDestination:
    to: tuple[str, ...]
    cc: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return "email:" + ",".join(self.to) + (";cc=" + ",".join(self.cc) if self.cc else "")


@dataclass(frozen=True)
class WebhookDestination:
    url: str

    @property
    def key(self) -> str:
        return "webhook:" + public_url_form(self.url)


Destination = SlackDestination | EmailDestination | WebhookDestination


def public_url_form(url: str) -> str:
    """The URL without credentials or query (which often carry tokens); a short digest of the
    full URL keeps two such URLs apart."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    shown = f"{parts.scheme}://{host}{parts.path}"
    if parts.username or parts.password or parts.query or parts.fragment:
        shown += "#" + hashlib.sha256(url.encode()).hexdigest()[:10]
    return shown


def default_rules(channel: str | None, on: Sequence[NotifyEvent]) -> list[NotifyRule]:
    """The global rule for runbooks that declare no `notify:` of their own."""
    if not channel or not on:
        return []
    return [NotifyRule(on=list(on), slack=SlackTarget(channel=channel))]


def destinations(rules: Sequence[NotifyRule], trigger: NotifyEvent) -> list[Destination]:
    """Every destination of the rules that fire on `trigger`, each once, in declaration order."""
    found: dict[str, Destination] = {}
    for rule in rules:
        if trigger not in rule.on:
            continue
        candidates: list[Destination] = []
        if rule.slack:
            candidates.append(SlackDestination(rule.slack.channel))
        if rule.email:
            candidates.append(EmailDestination(tuple(rule.email.to), tuple(rule.email.cc)))
        if rule.webhook:
            candidates.append(WebhookDestination(rule.webhook.url))
        for destination in candidates:
            found.setdefault(destination.key, destination)
    return list(found.values())
