"""The notifier process killed or restarted: every notification still goes out exactly once,
and Slack threads survive the restart (rebuilt from the record, not from memory)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import pytest
from notifier_peers import (
    ALL_RECORDS,
    NATS_URL,
    Notifiers,
    Recorded,
    SlackApi,
    new_execution_id,
    notifier_env,
    publish,
    recorded_outcomes,
    settled,
    wait_until,
)
from notifier_support import arun_execution, first, upto

from rb_common.bus import Bus, connect
from rb_common.events import Event, EventType

pytestmark = pytest.mark.integration

ACK_WAIT = 3.0
# The killed notifier leaves its claim on the message in flight: the restarted one waits this
# long before it looks in Slack and sends.
CLAIM_LEASE = 4.0
NOTIFY = 'notify:\n  - "on": [started, failed]\n    slack: {channel: "#ops"}\n'


def env_for(execution_id: str, consumer: str, slack_api: SlackApi) -> dict[str, str]:
    return notifier_env(
        execution_id,
        consumer,
        slack_api,
        RB_NOTIFIER_ACK_WAIT=str(ACK_WAIT),
        RB_NOTIFY_CLAIM_LEASE=str(CLAIM_LEASE),
    )


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
    assert await recorded_outcomes(bus, execution_id) == []  # no outcome recorded, nor acked
    [intent] = await recorded_outcomes(bus, execution_id, kinds=ALL_RECORDS)  # only the intent
    assert intent.type == "notification.sending" and intent.data["attempts"] == 1

    survivor = await notifiers.started(**env)
    await wait_until(lambda: len(slack_api.delivered) == 1, 30, "the message after the restart")
    [record] = await wait_records(bus, execution_id, 1)
    await settled(bus, consumer)  # acknowledged: nothing can be redelivered and sent again

    assert len(slack_api.delivered) == 1 and len(slack_api.posted()) == 1, notifiers.logs()
    # Slack had not kept the cut-short post: the restarted notifier looked it up, did not find
    # it, and sent it (attempt 2).
    posts = slack_api.posts
    assert len(posts) == 2 and posts[0].status is None
    assert any(c.path == "/api/conversations.history" for c in slack_api.calls)
    assert record.data["attempts"] == 2 and not record.data.get("found")
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
    await wait_records(bus, execution_id, 1)
    # As the coordinator does: the records become events of the execution (which the running
    # notifier receives too, and must ignore).
    noted = before[-1]
    for each in await recorded_outcomes(bus, execution_id, kinds=ALL_RECORDS):
        noted = sealed_after(noted, EventType(each.type), each.data)
        await publish(bus, [noted])
    assert notifiers.stop(first_process) == 0

    await publish(bus, reseal(after, noted))
    second_process = await notifiers.started(**env)
    await wait_until(lambda: len(slack_api.delivered) == 2, 30, "the failure message")
    root, reply = slack_api.delivered
    assert "thread_ts" not in root.body
    assert reply.body["thread_ts"] == root.ts  # remembered across the restart
    await wait_records(bus, execution_id, 2)
    await settled(bus, consumer)
    assert len(slack_api.delivered) == 2 and len(await recorded_outcomes(bus, execution_id)) == 2
    assert notifiers.stop(second_process) == 0


def sealed_after(previous: Event, type_: EventType, data: dict) -> Event:
    return Event.sealed(
        prev_hash=previous.hash,
        id=f"coord-{previous.seq + 1}-{previous.execution_id}",
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


async def test_killed_with_ten_posts_in_flight_every_message_once_threads_intact(
    notifiers: Notifiers, slack_api: SlackApi
) -> None:
    """Ten executions notify #ops when they start and (in the thread) when they fail. Slack keeps
    the ten start messages but their answers never come back: the notifier is killed (-9) while
    all ten are in flight. The restarted notifier finds each one by its message metadata
    (conversations.history with include_all_metadata, from the recorded intent time, three
    messages a page), records it, and replies in its thread: every message exactly once."""
    namespace = "ntf" + uuid.uuid4().hex[:8]
    bus = await connect(NATS_URL, namespace=namespace, name="rb-notifier-crash-ten")
    try:
        slack_api.page_size = 3  # Slack pages; the lookup follows the cursor
        runs: dict[str, list[Event]] = {}
        for _ in range(10):
            execution_id = new_execution_id()
            runs[execution_id] = await arun_execution(fail=True, notify=NOTIFY, execution_id=execution_id)
        env = {
            "RB_NAMESPACE": namespace,
            "RB_NOTIFIER_ACK_WAIT": str(ACK_WAIT),
            "RB_NOTIFY_CLAIM_LEASE": str(CLAIM_LEASE),
            "RB_SLACK_TOKEN": "xoxb-crash-test",
            "RB_SLACK_BASE_URL": slack_api.base_url,
        }
        slack_api.hold_posts.set()
        victim = await notifiers.started(**env)
        for events in runs.values():
            await publish(bus, events)
        await wait_until(lambda: slack_api.held == 10, 30, "ten posts kept by Slack, unanswered")
        notifiers.kill(victim)
        slack_api.hold_posts.clear()
        slack_api.release.set()  # the held requests end without an answer
        assert len(slack_api.posted()) == 10 and len(slack_api.delivered) == 0

        survivor = await notifiers.started(**env)

        async def all_recorded() -> bool:
            for execution_id in runs:
                if len(await recorded_outcomes(bus, execution_id)) < 2:
                    return False
            return True

        deadline = asyncio.get_running_loop().time() + 60
        while not await all_recorded():
            assert asyncio.get_running_loop().time() < deadline, notifiers.logs()
            await asyncio.sleep(0.2)
        await settled(bus, "notifier")

        posted = slack_api.posted()
        assert len(posted) == 20, notifiers.logs()
        by_identity = {}
        for message in posted:
            assert message.metadata and message.metadata["event_type"] == "rb_notification"
            payload = message.metadata["event_payload"]
            identity = (payload["event_id"], payload["channel"])
            assert identity not in by_identity, f"posted twice: {identity}"
            by_identity[identity] = message
        for execution_id, events in runs.items():
            started = first(events, EventType.EXECUTION_STARTED)
            failed = first(events, EventType.EXECUTION_FAILED)
            root = by_identity[(started.id, "slack:#ops")]
            reply = by_identity[(failed.id, "slack:#ops")]
            assert root.thread_ts is None and reply.thread_ts == root.ts  # the thread is intact
            records = {r.data["event_id"]: r for r in await recorded_outcomes(bus, execution_id)}
            assert records[started.id].type == "notification.sent"
            assert records[started.id].data["ts"] == root.ts and records[started.id].data["found"] is True
            assert records[failed.id].data["ts"] == reply.ts
            assert records[failed.id].data["thread_ts"] == root.ts
        lookups = [c for c in slack_api.calls if c.path == "/api/conversations.history"]
        assert lookups and all(c.body.get("include_all_metadata") in ("true", "1", True) for c in lookups)
        assert any(c.body.get("cursor") for c in lookups)  # paged
        assert notifiers.stop(survivor) == 0
    finally:
        for stream in (
            bus.names.events_stream,
            bus.names.inbox_stream,
            bus.names.triggers_stream,
            bus.names.tasks_stream,
            *bus.names.kv_streams(),
        ):
            with contextlib.suppress(Exception):
                await bus.js.delete_stream(stream)
        await bus.close()
