"""Two live notifiers with the same event (the chaos run's Slack duplicate: one notifier's
in-progress acks lost with its NATS node, the event redelivered to the other while the first was
still posting): the claim on the delivery lets only one post; a claimant killed before its post
landed is replaced after the claim's lease, and the message still goes out exactly once."""

from __future__ import annotations

import subprocess
import time

import pytest
from notifier_peers import (
    NATS_URL,
    Notifiers,
    SlackApi,
    new_execution_id,
    notifier_env,
    publish,
    recorded_outcomes,
    settled,
    wait_until,
)
from notifier_support import arun_execution, first

from rb_common.bus import Bus
from rb_common.events import Event, EventType

pytestmark = pytest.mark.integration

NOTIFY = 'notify:\n  - "on": [failed]\n    slack: {channel: "#ops"}\n'
WAITING = "is being sent by another notifier"
TAKEN_OVER = "outlived its lease; taken over"


def env_for(execution_id: str, consumer: str, slack_api: SlackApi, lease: float) -> dict[str, str]:
    # Each notifier has a consumer of its own: both receive the event at the same time, which
    # is what a redelivery to a second notifier while the first still posts amounts to.
    return notifier_env(
        execution_id, consumer, slack_api, RB_NATS_URL=NATS_URL, RB_NOTIFY_CLAIM_LEASE=str(lease)
    )


async def two_notifiers(
    bus: Bus, consumers: list[str], notifiers: Notifiers, slack_api: SlackApi, lease: float
) -> tuple[list[Event], list[str], list[subprocess.Popen[bytes]], float]:
    execution_id = new_execution_id()
    events = await arun_execution(fail=True, notify=NOTIFY, execution_id=execution_id)
    names = [f"notifier-a-{execution_id}", f"notifier-b-{execution_id}"]
    consumers.extend(names)
    processes = [await notifiers.started(**env_for(execution_id, n, slack_api, lease)) for n in names]
    published_at = time.time()  # no claim is older
    await publish(bus, events)
    return events, names, processes, published_at


def waiting(notifiers: Notifiers, processes: list[subprocess.Popen[bytes]]) -> list[subprocess.Popen[bytes]]:
    return [p for p in processes if WAITING in notifiers.log_of(p)]


@pytest.mark.parametrize("slack_api", [{"hold_first": True}], indirect=True)
async def test_two_live_notifiers_with_the_same_event_post_once(
    bus: Bus, consumers: list[str], notifiers: Notifiers, slack_api: SlackApi
) -> None:
    lease = 30.0  # far longer than the held post: the waiting notifier never takes over
    events, names, processes, _ = await two_notifiers(bus, consumers, notifiers, slack_api, lease)
    # One notifier's post is held by Slack (it lands later). The other has the same event: it
    # must not post meanwhile (before the claim, it looked in Slack, found nothing, posted).
    await wait_until(slack_api.stalled.is_set, 30, "the first post, held by Slack")
    await wait_until(
        lambda: len(slack_api.posts) > 1 or bool(waiting(notifiers, processes)),
        30,
        "the other notifier posting, or waiting for the claim",
    )
    slack_api.release.set()  # the held post lands and is answered
    for name in names:
        await settled(bus, name, timeout=lease + 60)  # both handled the event for good

    assert len(slack_api.posted()) == 1, notifiers.logs()
    assert len(waiting(notifiers, processes)) == 1, notifiers.logs()
    [record] = await recorded_outcomes(bus, events[0].execution_id)
    assert record.type == "notification.sent" and record.data["ts"] == slack_api.posted()[0].ts
    assert all(notifiers.stop(p) == 0 for p in processes)


@pytest.mark.parametrize("slack_api", [{"stall_first": True}], indirect=True)
async def test_a_claimant_killed_before_its_post_landed_is_replaced_after_the_lease(
    bus: Bus, consumers: list[str], notifiers: Notifiers, slack_api: SlackApi
) -> None:
    lease = 8.0
    events, names, processes, published_at = await two_notifiers(bus, consumers, notifiers, slack_api, lease)
    await wait_until(slack_api.stalled.is_set, 30, "the claimant's post, stalled by Slack")
    await wait_until(lambda: bool(waiting(notifiers, processes)), 30, "the other notifier waiting")
    [survivor] = waiting(notifiers, processes)
    [claimant] = [p for p in processes if p is not survivor]
    notifiers.kill(claimant)  # -9 with its post in flight: its claim stays behind
    slack_api.release.set()  # the stalled post ends unanswered; Slack did not keep it

    await wait_until(lambda: len(slack_api.delivered) == 1, lease + 60, "the survivor's post")
    await settled(bus, names[processes.index(survivor)], timeout=lease + 60)

    [posted] = slack_api.posted()
    assert TAKEN_OVER in notifiers.log_of(survivor)
    # Not before the lease ran out (the claim was taken before the kill), and only after
    # looking in Slack for the claimant's post.
    assert float(posted.ts) >= published_at + lease, notifiers.logs()
    assert any(c.path == "/api/conversations.history" for c in slack_api.calls)
    [record] = await recorded_outcomes(bus, events[0].execution_id)
    failed = first(events, EventType.EXECUTION_FAILED)
    assert record.type == "notification.sent" and record.data["attempts"] == 2
    assert record.data["event_id"] == failed.id
    assert notifiers.stop(survivor) == 0
