"""The notifier's counters: every attempt by channel and outcome, and the retries."""

from __future__ import annotations

from typing import Any

from notifier_support import first
from prometheus_client import REGISTRY
from test_notifier_handling import FakeJetStream, FakeSlack, failed_run, notifier, wire  # noqa: F401

from rb_common.events import Event, EventType


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def counts() -> list[float]:
    return [
        sample("rb_notifier_deliveries_total", channel="slack", outcome="sent"),
        sample("rb_notifier_deliveries_total", channel="slack", outcome="retrying"),
        sample("rb_notifier_deliveries_total", channel="slack", outcome="failed"),
        sample("rb_notifier_retries_total", channel="slack"),
    ]


async def test_attempts_are_counted_by_outcome(wire: Any, failed_run: list[Event]) -> None:  # noqa: F811
    js = FakeJetStream(failed_run)
    wire(js)
    before = counts()
    await notifier(js, FakeSlack(failures=2)).handle(first(failed_run, EventType.EXECUTION_STARTED))
    assert [a - b for a, b in zip(counts(), before, strict=True)] == [1, 2, 0, 2]

    js.inbox.clear()
    before = counts()
    slack = FakeSlack(failures=99)
    await notifier(js, slack, max_attempts=3).handle(first(failed_run, EventType.EXECUTION_STARTED))
    # Two retries, then the third failure gives up: failed, not retried.
    assert [a - b for a, b in zip(counts(), before, strict=True)] == [0, 2, 1, 2]
