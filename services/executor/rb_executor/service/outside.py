"""Outside events for `wait_for_event` steps: routed from `<ns>.events.<subject>` to the
executions waiting for them.

- When the coordinator records a step waiting for an event, `observe` publishes its
  registration (subject, correlation) on `<ns>.waiter.<execution>`, and the advance waits until
  it is stored (`stored`) before the message that caused it is acked: an executor killed in
  between leaves that message to be redelivered, and the executor that takes it loads the
  execution and registers its waiting steps again (derived from the loaded state; the msg id
  and the index make a repeat harmless). Every executor follows those
  registrations (an ordered consumer from the start of the stream), so its index of waiting
  steps survives restarts and covers what other replicas started.
- Each event (`executor-events-q`, a queue group) goes to the executions its index names; the
  applier (`received`) checks it against the execution's state, so a stale registration or
  another correlation records nothing.
- An event that came before its step waited: when a step registers, the events of its subject
  from the last RB_EVENT_BUFFER_SECONDS are read back and matched.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta

from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from pydantic import ValidationError

from rb_common.bus import patiently
from rb_common.canonical import canonical_json
from rb_common.consumers import consume_push, durable_config
from rb_common.messages import OutsideEvent, WaiterRegistration
from rb_engine.coordinator import ExecutionState
from rb_engine.coordinator import state as st
from rb_engine.coordinator.inbound import received
from rb_executor.service.coordinator import Coordinator

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (subject, canonical correlation)


def waiting_steps(state: ExecutionState) -> list[WaiterRegistration]:
    """The execution's `wait_for_event` steps that wait now (and have received nothing)."""
    found = []
    for sid in state.active:
        step = state.steps[sid]
        inputs = step.inputs if isinstance(step.inputs, dict) else {}
        if step.status != st.RUNNING or step.scheduled is not None or step.result is not None:
            continue
        if state.definition.step(sid).type != "wait_for_event" or not isinstance(inputs.get("subject"), str):
            continue
        found.append(
            WaiterRegistration(
                execution_id=state.execution_id,
                step_id=sid,
                attempt=step.attempt,
                subject=inputs["subject"],
                correlation=inputs.get("correlation"),
            )
        )
    return found


class OutsideEvents:
    def __init__(self, coordinator: Coordinator, *, buffer_seconds: float = 300.0) -> None:
        self.coordinator = coordinator
        self.bus = coordinator.bus
        self.buffer_seconds = buffer_seconds
        self.index: dict[Key, set[str]] = {}
        self.keys_of: dict[str, set[Key]] = {}  # execution -> its keys in the index
        # execution -> `exec:step:attempt` of its steps waiting now, registered by this process
        self.registered: dict[str, set[str]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # execution -> registrations being published (and buffered events matched); the advance
        # that started them awaits them (`stored`, outside its lock) before its message is acked,
        # so a crash leaves that message to redeliver
        self._registering: dict[str, list[asyncio.Task[None]]] = {}
        coordinator.observers.append(self.observe)
        coordinator.settlers.append(self.stored)

    async def run(self, stop: asyncio.Event) -> None:
        names = self.bus.names
        caught_up = asyncio.Event()
        follow = asyncio.create_task(self._follow_registrations(stop, caught_up))
        try:
            # The registrations made before this process started first: an event taken
            # before its step is indexed would find nobody waiting.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(caught_up.wait(), 30)
            await consume_push(
                self.bus,
                names.outside_stream,
                durable_config(f"{self.coordinator.consumer_prefix}-events-q", names.all_outside_events),
                self.on_event,
                stop,
            )
        finally:
            follow.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follow
            for task in list(self._tasks):
                task.cancel()

    # -- registrations ----------------------------------------------------------------------

    def observe(self, state: ExecutionState) -> None:
        """After every advance (inside its lock): register steps that started waiting, forget
        the ones that stopped."""
        waiters = waiting_steps(state)
        current = {(w.subject, canonical_json(w.correlation)) for w in waiters}
        known = self.keys_of.pop(state.execution_id, set())
        for stale in known - current:
            self.index.get(stale, set()).discard(state.execution_id)
            if not self.index.get(stale):
                self.index.pop(stale, None)
        if known & current:
            self.keys_of[state.execution_id] = known & current
        before = self.registered.pop(state.execution_id, set())
        now = {f"{w.execution_id}:{w.step_id}:{w.attempt}" for w in waiters}
        if now:
            self.registered[state.execution_id] = now
        for waiter in waiters:
            key = f"{waiter.execution_id}:{waiter.step_id}:{waiter.attempt}"
            if key in before:
                continue
            self._index(waiter)
            task = asyncio.create_task(self._register(waiter, key))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            self._registering.setdefault(state.execution_id, []).append(task)

    async def stored(self, execution_id: str) -> None:
        """Until the registrations this advance started are stored (raises if one failed: the
        message that led to the advance is not acked, and its redelivery registers again; a new
        process re-registers every waiting step of an execution it advances, `observe`)."""
        try:
            current = asyncio.current_task()
            for task in list(self._registering.get(execution_id, ())):
                if task is not current:  # a buffered event being delivered by the registration
                    await asyncio.shield(task)  # another advance may wait for it too
        finally:
            left = [t for t in self._registering.get(execution_id, ()) if not t.done()]
            if left:
                self._registering[execution_id] = left
            else:
                self._registering.pop(execution_id, None)

    def _index(self, waiter: WaiterRegistration) -> None:
        key = (waiter.subject, canonical_json(waiter.correlation))
        self.index.setdefault(key, set()).add(waiter.execution_id)
        self.keys_of.setdefault(waiter.execution_id, set()).add(key)

    async def _register(self, waiter: WaiterRegistration, key: str) -> None:
        names = self.bus.names
        try:
            await self.bus.js.publish(
                names.waiter_subject(waiter.execution_id),
                waiter.encode(),
                headers={"Nats-Msg-Id": f"waiter:{key}"},
                stream=names.outside_stream,
            )
            await self._match_buffered(waiter)
        except Exception:
            log.warning(
                "%s: cannot register step %s for outside events", waiter.execution_id, waiter.step_id
            )
            self.registered.get(waiter.execution_id, set()).discard(key)  # again at the next advance
            raise

    async def _follow_registrations(self, stop: asyncio.Event, caught_up: asyncio.Event) -> None:
        sub = await patiently(
            lambda: self.bus.js.subscribe(
                self.bus.names.all_of("waiter"), ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
            ),
            "waiter registrations",
        )
        try:
            while not stop.is_set():
                try:
                    msg = await sub.next_msg(timeout=1.0)
                except TimeoutError:
                    caught_up.set()  # none stored, or all read
                    continue
                try:
                    self._index(WaiterRegistration.model_validate_json(msg.data))
                except ValidationError:
                    log.error("dropping a malformed waiter registration on %s", msg.subject)
                if (msg.metadata.num_pending or 0) == 0:
                    caught_up.set()
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _match_buffered(self, waiter: WaiterRegistration) -> None:
        """Events of the waiter's subject that came in the last RB_EVENT_BUFFER_SECONDS."""
        if self.buffer_seconds <= 0:
            return
        names = self.bus.names
        subject = names.outside_event_subject(waiter.subject)
        since = datetime.now(UTC) - timedelta(seconds=self.buffer_seconds)
        try:  # most often nothing came: one look instead of a consumer that waits to be sure
            last = await self.bus.js.get_last_msg(names.outside_stream, subject)
        except NotFoundError:
            return
        if last.time is not None and last.time < since:
            return
        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_TIME,
            opt_start_time=since,
        )
        sub = await self.bus.js.subscribe(subject, ordered_consumer=True, config=config)
        wanted = canonical_json(waiter.correlation)
        try:
            while True:
                try:
                    msg = await sub.next_msg(timeout=0.5)
                except TimeoutError:
                    return  # caught up
                try:
                    event = OutsideEvent.model_validate_json(msg.data)
                except ValidationError:
                    continue
                if canonical_json(event.correlation) == wanted:
                    await self._deliver(waiter.execution_id, waiter.subject, event)
                    return
                if (msg.metadata.num_pending or 0) == 0:
                    return
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    # -- events -----------------------------------------------------------------------------

    async def on_event(self, msg: Msg) -> None:
        try:
            event = OutsideEvent.model_validate_json(msg.data)
        except ValidationError as exc:
            log.error("dropping a malformed outside event on %s: %s", msg.subject, exc.errors()[0]["msg"])
            await msg.term()
            return
        subject = msg.subject.removeprefix(self.bus.names.outside_event_subject(""))
        for execution_id in sorted(self.index.get((subject, canonical_json(event.correlation)), ())):
            await self._deliver(execution_id, subject, event)
        await msg.ack()  # matched or not, it stays in the stream for steps that wait later

    async def _deliver(self, execution_id: str, subject: str, event: OutsideEvent) -> None:
        await self.coordinator.advance(
            execution_id, lambda state: received(state, subject, event.correlation, event.data, event.id)
        )
        entry = self.coordinator.cache.get(execution_id)
        if entry is None or not any(
            w.subject == subject and canonical_json(w.correlation) == canonical_json(event.correlation)
            for w in waiting_steps(entry.state)
        ):
            self.index.get((subject, canonical_json(event.correlation)), set()).discard(execution_id)
