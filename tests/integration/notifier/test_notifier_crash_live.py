"""The notifier process killed or restarted: every notification still goes out exactly once,
and Slack threads survive the restart (rebuilt from the record, not from memory)."""

from __future__ import annotations

import asyncio

import pytest
from notifier_peers import (
    Notifiers,
    Recorded,
    SlackApi,
    new_execution_id,
    publish,
    recorded_outcomes,
    wait_until,
)
from notifier_support import arun_execution, first, upto

from rb_common.bus import Bus
from rb_common.events import Event, EventType

pytestmark = pytest.mark.integration

ACK_WAIT = 3.0
NOTIFY = 'notify:\n  - "on": [started, failed]\n    slack: {channel: "#ops"}\n'


def env_for(execution_id: str, consumer: str, slack_api: SlackApi) -> dict[str, str]:
    return {
        "RB_NOTIFIER_CONSUMER": consumer,
        "RB_NOTIFIER_FILTER_SUBJECT": f"rb.exec.{execution_id}",
        "RB_NOTIFIER_ACK_WAIT": str(ACK_WAIT),
        "RB_SLACK_TOKEN": "xoxb-crash-test",
        "RB_SLACK_BASE_URL": slack_api.base_url,
    }


async def wait_records(bus: Bus, execution_id: str, n: int, timeout: float = 30.0) -> list[Recorded]:
    records: list[Recorded] = []
    for _ in range(int(timeout * 10)):
        records = await recorded_outcomes(bus, execution_id)
        if len(records) >= n:
            return records
        await asyncio.sleep(0.1)
    raise AssertionError(f"{len(records)} outcomes recorded, want {n}")


@pytest.mark.parametrize("slack_api", [{"stall_first": True}], indirect=True)
async def test_killed_while_sending_then_restarted_sends_exactly_once(
    bus: Bus, consumers: list[str], notifiers: Notifiers, slack_api: SlackApi
) -> None:
    execution_id = new_execution_id()
    notify = 'notify:\n  - "on": [failed]\n    slack: {channel: "#ops"}\n'
    events = await arun_execution(fail=True, notify=notify, execution_id=execution_id)
    consumer = f"notifier-test-{execution_id}"
    consumers.append(consumer)
    env = env_for(execution_id, consumer, slack_api)
    await publish(bus, events)
    victim = await notifiers.started(**env)
    # The event was received and the message is on its way: Slack holds the request.
    await wait_until(slack_api.stalled.is_set, 30, "the stalled Slack request")
    notifiers.kill(victim)
    slack_api.release.set()  # the stalled request ends without an answer
    assert await recorded_outcomes(bus, execution_id) == []  # nothing was recorded, nor acked

    survivor = await notifiers.started(**env)
    await wait_until(lambda: len(slack_api.delivered) == 1, 30, "the message after the restart")
    [record] = await wait_records(bus, execution_id, 1)
    await asyncio.sleep(ACK_WAIT + 1.5)  # time for any (wrong) redelivery to send again

    assert len(slack_api.delivered) == 1, notifiers.logs()
    assert len(slack_api.calls) == 2 and slack_api.calls[0].status is None
    [delivered] = slack_api.delivered
    assert "Nightly Enrichment failed" in delivered.body["text"]
    failed = first(events, EventType.EXECUTION_FAILED)
    assert record.type == "notification.sent" and record.msg_id == f"notify:{failed.id}:slack:#ops"
    assert record.data["ts"] == delivered.ts
    assert await recorded_outcomes(bus, execution_id) == [record]
    assert notifiers.stop(survivor) == 0


async def test_the_thread_survives_a_restart(
    bus: Bus, consumers: list[str], notifiers: Notifiers, slack_api: SlackApi
) -> None:
    execution_id = new_execution_id()
    events = await arun_execution(fail=True, notify=NOTIFY, execution_id=execution_id)
    # Split where a coordinator (an executor may run on the shared NATS and will fold this
    # execution when it records the notification) has nothing to decide: the last step runs.
    running = next(e for e in events if e.type == EventType.STEP_STARTED and e.data["step_id"] == "enrich")
    before, after = upto(events, running), events[running.seq :]
    consumer = f"notifier-test-{execution_id}"
    consumers.append(consumer)
    env = env_for(execution_id, consumer, slack_api)

    await publish(bus, before)
    first_process = await notifiers.started(**env)
    await wait_until(lambda: len(slack_api.delivered) == 1, 30, "the start message")
    [record] = await wait_records(bus, execution_id, 1)
    # As the coordinator does: the outcome becomes an event of the execution (which the
    # running notifier receives too, and must ignore).
    noted = sealed_after(before[-1], EventType.NOTIFICATION_SENT, record.data)
    await publish(bus, [noted])
    assert notifiers.stop(first_process) == 0

    await publish(bus, reseal(after, noted))
    second_process = await notifiers.started(**env)
    await wait_until(lambda: len(slack_api.delivered) == 2, 30, "the failure message")
    root, reply = slack_api.delivered
    assert "thread_ts" not in root.body
    assert reply.body["thread_ts"] == root.ts  # remembered across the restart
    await wait_records(bus, execution_id, 2)
    await asyncio.sleep(1.0)
    assert len(slack_api.delivered) == 2 and len(await recorded_outcomes(bus, execution_id)) == 2
    assert notifiers.stop(second_process) == 0


def sealed_after(previous: Event, type_: EventType, data: dict) -> Event:
    return Event.sealed(
        prev_hash=previous.hash,
        id=f"coord-{previous.id}",
        execution_id=previous.execution_id,
        seq=previous.seq + 1,
        type=type_,
        time=previous.time,
        actor="rb-notifier",
        data=data,
    )


def reseal(events: list[Event], previous: Event) -> list[Event]:
    """`events` renumbered to follow `previous`, hash chain included."""
    out = []
    for event in events:
        fields = event.model_dump(exclude={"hash", "prev_hash", "seq"})
        previous = Event.sealed(prev_hash=previous.hash, seq=previous.seq + 1, **fields)
        out.append(previous)
    return out
