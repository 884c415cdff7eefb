"""NATS JetStream: stream layout, connection, and the append/read primitives of the event log."""

from __future__ import annotations

import asyncio
import copy
import itertools
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import nats
from nats.aio.client import Client
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy, PubAck, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import APIError, NoStreamResponseError, NotFoundError, ServiceUnavailableError

from rb_common import tracing
from rb_common.events import Event
from rb_common.ports import ConcurrencyError
from rb_common.upcast import upcast

log = logging.getLogger(__name__)

T = TypeVar("T")

# JetStream's error codes for failed Nats-Expected-Last-Subject-Sequence / -Last-Msg-Id checks.
WRONG_LAST_SEQUENCE = 10071
WRONG_LAST_MSG_ID = 10070

# What JetStream raises while it cannot serve (a cluster without quorum, a stream electing its
# leader, a node restarting): worth trying again; anything else is a real answer.
JETSTREAM_UNAVAILABLE = (NatsTimeout, NoRespondersError, NoStreamResponseError, ServiceUnavailableError)
JETSTREAM_WAIT = 300.0


DAY = 86_400.0
DEFAULT_NAMESPACE = "rb"
NAMESPACE_PATTERN = r"^[a-z][a-z0-9_-]{0,31}$"


@dataclass(frozen=True)
class Names:
    """Every stream, subject, durable, KV bucket and core subject of one stack, under its namespace
    (`RB_NAMESPACE`, default `rb`): stacks and test sessions sharing a NATS server never see each
    other. The one source of truth for the layout; nothing else spells a subject."""

    namespace: str = DEFAULT_NAMESPACE
    # Copies of every stream and KV bucket (`RB_STREAM_REPLICAS`): 1 on one server, 3 on a
    # cluster (at most the cluster's size).
    replicas: int = 1

    def __post_init__(self) -> None:
        if not re.fullmatch(NAMESPACE_PATTERN, self.namespace):
            raise ValueError(f"namespace {self.namespace!r} must match {NAMESPACE_PATTERN}")
        if not 1 <= self.replicas <= 5:
            raise ValueError(f"replicas {self.replicas} must be between 1 and 5")

    # -- streams --------------------------------------------------------------------------------
    @property
    def prefix(self) -> str:
        return self.namespace.upper().replace("-", "_")

    @property
    def events_stream(self) -> str:
        return f"{self.prefix}_EVENTS"

    @property
    def triggers_stream(self) -> str:
        return f"{self.prefix}_TRIGGERS"

    @property
    def tasks_stream(self) -> str:
        return f"{self.prefix}_TASKS"

    @property
    def inbox_stream(self) -> str:
        return f"{self.prefix}_INBOX"

    @property
    def outside_stream(self) -> str:
        """Outside events for `wait_for_event` steps, and the waiting steps' registrations."""
        return f"{self.prefix}_OUTSIDE"

    # -- KV buckets -----------------------------------------------------------------------------
    @property
    def registry_bucket(self) -> str:
        """Registry changes, one key per runbook (rb_common.registry_events); its stream is
        `KV_<bucket>`."""
        return f"{self.prefix}_REGISTRY"

    @property
    def admission_bucket(self) -> str:
        """The executors' shared slot table: running and queued executions (rb_common.slots)."""
        return f"{self.prefix}_ADMISSION"

    @property
    def registry_stream(self) -> str:
        return f"KV_{self.registry_bucket}"

    def registry_key_subject(self, runbook_id: str) -> str:
        return f"$KV.{self.registry_bucket}.{runbook_id}"

    @property
    def all_registry_keys(self) -> str:
        return f"$KV.{self.registry_bucket}.>"

    @property
    def claims_bucket(self) -> str:
        """Slack deliveries being posted, one key per (event id, channel) (rb_notifier.claims):
        two notifiers never post the same message at once. Its stream is `KV_<bucket>`."""
        return f"{self.prefix}_NOTIFY_CLAIMS"

    @property
    def claims_stream(self) -> str:
        return f"KV_{self.claims_bucket}"

    def kv_streams(self) -> list[str]:
        """The streams behind every KV bucket of the namespace (what a cleanup deletes too)."""
        return [self.registry_stream, self.claims_stream, f"KV_{self.admission_bucket}"]

    # -- subjects -------------------------------------------------------------------------------
    def exec_subject(self, execution_id: str) -> str:
        return f"{self.namespace}.exec.{execution_id}"

    def trigger_subject(self, runbook_id: str) -> str:
        return f"{self.namespace}.trigger.{runbook_id}"

    def task_subject(self, step_type: str) -> str:
        return f"{self.namespace}.task.{step_type}"

    def result_subject(self, execution_id: str) -> str:
        return f"{self.namespace}.result.{execution_id}"

    def alert_subject(self, source: str) -> str:
        return f"{self.namespace}.alert.{source}"

    def control_subject(self, execution_id: str) -> str:
        return f"{self.namespace}.control.{execution_id}"

    def timer_subject(self, execution_id: str) -> str:
        return f"{self.namespace}.timer.{execution_id}"

    def all_of(self, kind: str) -> str:
        """The wildcard over one kind of subject: `all_of("exec")` = `rb.exec.*`."""
        return f"{self.namespace}.{kind}.*"

    def outside_event_subject(self, subject: str) -> str:
        """An outside event (`wait_for_event`'s `subject`, dotted tokens): `rb.events.<subject>`."""
        return f"{self.namespace}.events.{subject}"

    @property
    def all_outside_events(self) -> str:
        return f"{self.namespace}.events.>"

    def waiter_subject(self, execution_id: str) -> str:
        """A `wait_for_event` step's registration (subject, correlation), for every executor."""
        return f"{self.namespace}.waiter.{execution_id}"

    # Core NATS (not stored): step cancellations to workers, push consumers' deliveries.
    def cancel_subject(self, execution_id: str, step_id: str) -> str:
        return f"{self.namespace}.cancel.{execution_id}.{step_id}"

    @property
    def all_cancels(self) -> str:
        return f"{self.namespace}.cancel.>"

    def projected_subject(self, execution_id: str) -> str:
        """The recorder's word that an execution's end is in its tables (payload: the event
        type); the API's long polls wake on it (rb_api.ended). `all_of("projected")` is every one."""
        return f"{self.namespace}.projected.{execution_id}"

    def deliver_subject(self, durable: str) -> str:
        return f"{self.namespace}.deliver.{durable}"

    @property
    def lost_task_advisories(self) -> str:
        """What JetStream says when a task has been delivered MaxDeliver times and never
        acknowledged (its workers crashed or were killed each time); kept in the inbox stream so
        no coordinator misses it."""
        return f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{self.tasks_stream}.*"

    # -- layout ---------------------------------------------------------------------------------
    def streams(self) -> list[StreamConfig]:
        # Limits retention everywhere (not work queues): consumers may overlap (several
        # executors, tests, tools reading the same subjects) and acknowledged messages age out.
        return [
            # The record: one subject per execution, kept, deduplicated by event id.
            StreamConfig(
                name=self.events_stream,
                subjects=[self.all_of("exec")],
                retention=RetentionPolicy.LIMITS,
                storage=StorageType.FILE,
                num_replicas=self.replicas,
                duplicate_window=600.0,
                allow_direct=True,
            ),
            # Requests to start executions; a long window so cron fires and alerts dedupe.
            StreamConfig(
                name=self.triggers_stream,
                subjects=[self.all_of("trigger"), self.all_of("alert")],
                retention=RetentionPolicy.LIMITS,
                max_age=7 * DAY,
                storage=StorageType.FILE,
                num_replicas=self.replicas,
                duplicate_window=TRIGGER_DEDUPE_WINDOW,
            ),
            # Step attempts for workers.
            StreamConfig(
                name=self.tasks_stream,
                subjects=[self.all_of("task")],
                retention=RetentionPolicy.LIMITS,
                max_age=DAY,
                storage=StorageType.FILE,
                num_replicas=self.replicas,
                duplicate_window=3600.0,
            ),
            # What the coordinator consumes besides triggers: worker outcomes, operator commands
            # and tasks no worker could finish.
            StreamConfig(
                name=self.inbox_stream,
                subjects=[
                    self.all_of("result"),
                    self.all_of("control"),
                    self.all_of("timer"),
                    self.lost_task_advisories,
                ],
                retention=RetentionPolicy.LIMITS,
                max_age=DAY,
                storage=StorageType.FILE,
                num_replicas=self.replicas,
                duplicate_window=600.0,
            ),
            # Outside events (POST /api/v1/events, or published here directly) and the
            # registrations of the steps waiting for them; kept a day: early events are matched
            # from here when their step starts waiting (RB_EVENT_BUFFER_SECONDS).
            StreamConfig(
                name=self.outside_stream,
                subjects=[self.all_outside_events, self.all_of("waiter")],
                retention=RetentionPolicy.LIMITS,
                max_age=DAY,
                storage=StorageType.FILE,
                num_replicas=self.replicas,
                duplicate_window=600.0,
            ),
        ]


TRIGGER_DEDUPE_WINDOW = 3600.0
DEFAULT_NAMES = Names()


@dataclass
class Bus:
    nc: Client
    js: JetStreamContext
    names: Names = DEFAULT_NAMES

    async def close(self) -> None:
        await self.nc.drain()


async def connect(
    url: str,
    *,
    name: str,
    namespace: str = DEFAULT_NAMESPACE,
    replicas: int = 1,
    connect_timeout: float = 5.0,
    jetstream_wait: float = JETSTREAM_WAIT,
) -> Bus:
    nc = await nats.connect(
        url,
        name=name,
        connect_timeout=connect_timeout,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        allow_reconnect=True,
    )
    js = nc.jetstream(timeout=10.0)
    names = Names(namespace, replicas)
    try:
        await _ensure_streams_patiently(js, names, jetstream_wait)
    except BaseException:
        await nc.close()
        raise
    return Bus(nc, js, names)


async def patiently(call: Callable[[], Awaitable[T]], what: str, wait: float = JETSTREAM_WAIT) -> T:
    """`call()`, tried again while JetStream cannot answer, for up to `wait` seconds: a service
    setting itself up (streams, durable consumers, buckets, subscriptions) during a lost quorum
    waits and resumes by itself instead of exiting. `call` must be safe to repeat."""
    deadline = asyncio.get_running_loop().time() + wait
    pause = 0.5
    while True:
        try:
            return await call()
        except JETSTREAM_UNAVAILABLE as exc:
            if asyncio.get_running_loop().time() + pause > deadline:
                raise
            log.warning("JetStream does not answer yet (%s: %s); trying again in %.1fs", what, type(exc).__name__, pause)
            await asyncio.sleep(pause)
            pause = min(pause * 2, 5.0)


async def _ensure_streams_patiently(js: JetStreamContext, names: Names, wait: float) -> None:
    """ensure_streams, tried again while JetStream cannot answer (a replica started then waits
    and resumes by itself instead of exiting), for up to `wait` seconds."""
    await patiently(lambda: ensure_streams(js, names), "streams", wait)


async def ensure_streams(js: JetStreamContext, names: Names = DEFAULT_NAMES) -> None:
    """Create the streams, or bring their config up to date. An operator's higher replica count
    (e.g. `nats stream edit RB_EVENTS --replicas 3` on a cluster) is kept, never reduced."""
    for config in names.streams():
        assert config.name
        try:
            info = await js.stream_info(config.name)
        except NotFoundError:
            await js.add_stream(config)
            continue
        wanted = copy.copy(config)
        wanted.num_replicas = max(info.config.num_replicas or 1, config.num_replicas or 1)
        await js.update_stream(wanted)


async def append_event(bus: Bus, event: Event, expected_last_subject_seq: int) -> int:
    """Append to the execution's subject iff its last stream sequence is the expected one."""
    return _checked(
        await _publish_event(bus, event, expected_last_subject_seq=expected_last_subject_seq), event
    )


async def append_events(
    bus: Bus, events: list[Event], expected_last_subject_seq: int, *, pipelined: bool = True
) -> int:
    """Append `events` in order, as one writer: the first iff the subject's last sequence is the
    expected one, each next one iff it directly follows the one before. Returns the last sequence.

    Pipelined, every event after the first is sent without waiting for the previous ack, on the
    condition that the previous event is the last message of the whole stream (JetStream has no
    per-subject form of that check). When another execution's event came in between, the
    condition fails, nothing is stored, and the rest are appended one by one on the subject
    sequence instead: the pipeline is only ever a shortcut, never a weaker check."""
    if not events:
        return expected_last_subject_seq
    # Not on a replicated stream: there a refused Nats-Expected-Last-Msg-Id around a leader change
    # left every replica in "critical write error: last msgid mismatch" and the stream without a
    # leader (nats-server 2.15, tests/chaos with RB_STREAM_REPLICAS=3).
    if not pipelined or len(events) == 1 or bus.names.replicas > 1:
        last = expected_last_subject_seq
        for event in events:
            last = await append_event(bus, event, last)
        return last
    sends = [
        asyncio.ensure_future(
            _publish_event(bus, events[0], expected_last_subject_seq=expected_last_subject_seq)
        )
    ]
    sends += [
        asyncio.ensure_future(_publish_event(bus, event, expected_last_msg_id=previous.id))
        for previous, event in itertools.pairwise(events)
    ]
    acks = await asyncio.gather(*sends, return_exceptions=True)
    last = expected_last_subject_seq
    for index, (event, ack) in enumerate(zip(events, acks, strict=True)):
        if isinstance(ack, APIError) and ack.err_code == WRONG_LAST_MSG_ID and index > 0:
            # Interleaved with another execution's event: nothing from here on was stored.
            for rest in events[index:]:
                last = await append_event(bus, rest, last)
            return last
        if isinstance(ack, BaseException):
            raise ack
        last = _checked(ack, event)
    return last


async def _publish_event(
    bus: Bus,
    event: Event,
    *,
    expected_last_subject_seq: int | None = None,
    expected_last_msg_id: str | None = None,
) -> PubAck:
    headers = tracing.inject({"Nats-Msg-Id": event.id})  # the execution's trace context, if on
    if expected_last_subject_seq is not None:
        headers["Nats-Expected-Last-Subject-Sequence"] = str(expected_last_subject_seq)
    if expected_last_msg_id is not None:
        headers["Nats-Expected-Last-Msg-Id"] = expected_last_msg_id
    try:
        return await bus.js.publish(
            bus.names.exec_subject(event.execution_id),
            event.to_json().encode(),
            headers=headers,
            stream=bus.names.events_stream,
        )
    except APIError as exc:
        if exc.err_code == WRONG_LAST_SEQUENCE:
            raise ConcurrencyError(f"{event.execution_id}: another writer appended first") from None
        raise


def _checked(ack: PubAck, event: Event) -> int:
    if ack.duplicate:
        raise ConcurrencyError(f"{event.execution_id}: event {event.id} was already appended")
    return ack.seq


async def last_subject_seq(bus: Bus, execution_id: str) -> int:
    """Stream sequence of the execution's last event (0 if it has none), as the stream's leader
    has it. Not a direct get: any replica answers those, and a follower behind the leader (after
    a leader change) would make a coordinator's stale cache look current, and a result it did
    not know the step of would be dropped as stale (issue 19's 30-minute chaos run left one
    execution RUNNING for good that way)."""
    try:
        last = await bus.js.get_last_msg(bus.names.events_stream, bus.names.exec_subject(execution_id))
    except NotFoundError:
        return 0
    return last.seq or 0


async def last_event(bus: Bus, execution_id: str) -> Event | None:
    """The execution's last event (None if it has none): one direct get."""
    try:
        last = await bus.js.get_last_msg(
            bus.names.events_stream, bus.names.exec_subject(execution_id), direct=True
        )
    except NotFoundError:
        return None
    return Event.from_json(last.data or b"")


async def read_execution(bus: Bus, execution_id: str, timeout: float = 10.0) -> list[tuple[Event, int]]:
    """Every event of an execution with its stream sequence, oldest first ([] if none), upcast
    to the current schema version."""
    js = bus.js
    subject = bus.names.exec_subject(execution_id)
    try:
        last = await js.get_last_msg(bus.names.events_stream, subject)
    except NotFoundError:
        return []
    last_seq = last.seq or 0
    out: list[tuple[Event, int]] = []
    sub = await js.subscribe(subject, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL)
    try:
        while True:
            msg = await asyncio.wait_for(sub.next_msg(timeout=timeout), timeout)
            seq = msg.metadata.sequence.stream
            out.append((upcast(Event.from_json(msg.data)), seq))  # in the current schema
            if seq >= last_seq:
                return out
    finally:
        await sub.unsubscribe()
