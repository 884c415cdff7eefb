"""The notifier's metrics: delivery attempts by channel kind and outcome, and retries."""

from __future__ import annotations

from rb_common.metrics import Counter

DELIVERIES = Counter(
    "rb_notifier_deliveries_total",
    "Notification delivery attempts, by channel kind (slack, email, webhook) and outcome "
    "(sent, retrying, failed: permanent or out of attempts/time).",
    ["channel", "outcome"],
)
RETRIES = Counter(
    "rb_notifier_retries_total",
    "Failed delivery attempts that will be tried again, by channel kind.",
    ["channel"],
)


def kind(target: object) -> str:
    """slack | email | webhook, from the destination's class (SlackDestination, ...)."""
    return type(target).__name__.removesuffix("Destination").lower() or "unknown"


def delivered(target: object, outcome: str) -> None:
    channel = kind(target)
    DELIVERIES.labels(channel, outcome).inc()
    if outcome == "retrying":
        RETRIES.labels(channel).inc()
