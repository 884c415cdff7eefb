"""The executor's coordinator over JetStream: the same pure decide/evolve as `rb run`.

It is the only writer of `rb.exec.<id>`: every append carries the expected last subject
sequence, so when two replicas race on one execution, one wins and the other reloads the
stream and re-decides (no lost or duplicated decision). It consumes trigger requests and the
inbox (worker outcomes, operator commands), records them as events, applies the decisions and
publishes step tasks for the workers.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from nats.aio.msg import Msg
from nats.js.errors import NotFoundError
from pydantic import ValidationError

from rb_common import bus as nats_bus
from rb_common import logs, tracing
from rb_common.bus import Bus
from rb_common.consumers import consume_push, durable_config
from rb_common.events import TERMINAL_EVENTS, Event, EventType
from rb_common.expressions import mentions_secrets
from rb_common.messages import ControlCommand, StepOutcome, StepTask, TimerDue, TriggerRequest
from rb_common.metrics import timed
from rb_common.payloads import StepFailed, StepStarted, StepSucceeded
from rb_common.ports import ConcurrencyError
from rb_common.registry_events import read as read_registry
from rb_common.slots_bucket import Slots
from rb_common.step_specs import SPECS
from rb_engine.child_runs import child_fields
from rb_engine.coordinator import ExecutionState, RunStep, evolve
from rb_engine.coordinator import state as st
from rb_engine.coordinator.applier import (
    CONTROLS,
    EXECUTOR,
    Fact,
    accepted,
    apply,
    controlled,
    fired,
    lost,
    reported,
)
from rb_engine.coordinator.context import expression_context
from rb_executor import metrics
from rb_executor.service import admission
from rb_executor.service.traces import ExecutionSpans

log = logging.getLogger(__name__)

# Step types no worker runs: the notifier delivers `notify` steps from their step.scheduled event.
NOT_TASKS = frozenset({"notify"})
TIMER_EARLY = 0.05  # seconds: a timer handed over this close to its time fires now


@dataclass
class _Entry:
    state: ExecutionState
    last_stream_seq: int
    published: set[str] = field(default_factory=set)  # idempotency keys of tasks sent
    fresh: bool = False  # just read from the stream


Decision = Callable[[ExecutionState], list[Fact]]


class Coordinator:
    def __init__(
        self,
        bus: Bus,
        *,
        cache_size: int = 10_000,
        clock: Callable[[], datetime] | None = None,
        consumer_prefix: str = "executor",
        slots: Slots | None = None,
        sweep_seconds: float = 2.0,
    ) -> None:
        self.bus = bus
        self.clock = clock or (lambda: datetime.now(UTC))
        self.cache: OrderedDict[str, _Entry] = OrderedDict()
        self.cache_size = cache_size
        self.locks: dict[str, asyncio.Lock] = {}
        self.consumer_prefix = consumer_prefix
        self.writing = 0  # appends in flight, over all executions
        # Called with the state after every advance, inside its lock (rb_executor.service.outside).
        self.observers: list[Callable[[ExecutionState], None]] = []
        # Awaited after the observers, before advance returns (and its message is acked): what
        # an observer started that must be stored first (outside.OutsideEvents.stored).
        self.settlers: list[Callable[[str], Awaitable[None]]] = []
        self.registry = admission.Reads(lambda runbook_id: read_registry(bus, runbook_id))
        self.spans = ExecutionSpans()  # traces: each execution's span (rb_common.tracing)
        # The shared slot table (admission's limits); None: every start runs at once.
        self.slots = slots
        self.sweep_seconds = sweep_seconds

    async def run(self, stop: asyncio.Event) -> None:
        try:
            await self._consume(stop)
        finally:
            self.spans.close()

    async def _consume(self, stop: asyncio.Event) -> None:
        bus, names = self.bus, self.bus.names
        await asyncio.gather(
            consume_push(
                bus,
                names.triggers_stream,
                durable_config(f"{self.consumer_prefix}-triggers-q", names.all_of("trigger")),
                self.on_trigger,
                stop,
            ),
            consume_push(
                bus,
                names.inbox_stream,
                durable_config(f"{self.consumer_prefix}-results-q", names.all_of("result")),
                self.on_outcome,
                stop,
            ),
            consume_push(
                bus,
                names.inbox_stream,
                durable_config(f"{self.consumer_prefix}-control-q", names.all_of("control")),
                self.on_control,
                stop,
            ),
            consume_push(
                bus,
                names.inbox_stream,
                durable_config(f"{self.consumer_prefix}-lost-q", names.lost_task_advisories),
                self.on_lost_task,
                stop,
            ),
            consume_push(
                bus,
                names.inbox_stream,
                durable_config(f"{self.consumer_prefix}-timers-q", names.all_of("timer")),
                self.on_timer,
                stop,
            ),
            self._sweep(stop),
        )

    # -- message handlers -------------------------------------------------------------------

    async def on_trigger(self, msg: Msg) -> None:
        try:
            request = TriggerRequest.model_validate_json(msg.data)
        except ValidationError as exc:
            log.error("dropping malformed trigger on %s: %s", msg.subject, exc.errors()[0]["msg"])
            await msg.term()
            return

        # The revision must be APPROVED now (as of a registry read made after this trigger came).
        refused = await admission.refusal(self.bus, request, self.registry)
        self.spans.begin(request.execution_id, msg, msg.subject.rsplit(".", 1)[-1])
        execution_id = request.execution_id
        verdict = None
        new = refused is None and (await self._entry(execution_id)).state.status == st.NEW  # else: a repeat
        if new and self.slots is not None:
            slot, on_limit = admission.slot(request, time.time())
            verdict = await self.slots.admit(slot, on_limit)
        stored: list[Fact] = []  # the facts of the decision that was stored (none for a repeat)

        def admit(state: ExecutionState) -> list[Fact]:
            stored[:] = admission.admitted(state, request, refused, verdict)
            return stored

        await self.advance(execution_id, admit)
        why = admission.refusal_kind(refused, verdict)
        if why is not None and any(fact.type == EventType.EXECUTION_ABORTED for fact in stored):
            metrics.refused(admission.runbook_of(request), why)
        if verdict is not None and verdict.cancel is not None:
            reason = f"on_limit: cancel_oldest, for {execution_id}"
            await self.advance(
                verdict.cancel,
                lambda state: controlled(
                    state, EventType.EXECUTION_CANCEL_REQUESTED, {"requested_via": "admission", "reason": reason}, EXECUTOR
                ),
            )
        # A slot may have freed between the table's change and the record of the wait.
        waits = verdict is not None and verdict.outcome == "queue" and self.slots is not None
        if waits and self.slots is not None and (await self.slots.table()).find(execution_id) == "running":
            await self.advance(execution_id, admission.dequeued)
        await msg.ack()

    async def on_outcome(self, msg: Msg) -> None:
        try:
            outcome = StepOutcome.model_validate_json(msg.data)
        except ValidationError as exc:
            log.error("dropping malformed outcome: %s", exc.errors()[0]["msg"])
            await msg.term()
            return
        self.spans.remember(outcome.execution_id, msg)
        await self.accept_outcome(outcome)
        await msg.ack()

    async def accept_outcome(self, outcome: StepOutcome) -> None:
        """Record a worker's or the notifier's report, from the inbox or from a worker in this
        process; returns once it is recorded and the tasks it leads to are published."""
        await self.advance(outcome.execution_id, lambda state: reported(state, outcome.type, outcome.data))

    async def accept_report(
        self, execution_id: str, report: StepStarted | StepSucceeded | StepFailed
    ) -> None:
        """A worker's report from this process, as its typed model: recorded as `accept_outcome`
        records the same report from the inbox, without dumping it into a message and parsing
        it back."""
        await self.advance(execution_id, lambda state: accepted(state, report))

    async def on_control(self, msg: Msg) -> None:
        try:
            command = ControlCommand.model_validate_json(msg.data)
            if command.type not in CONTROLS:
                raise ValueError(f"unknown control type {command.type!r}")
        except (ValidationError, ValueError) as exc:
            log.error("dropping malformed control command: %s", exc)
            await msg.term()
            return

        await self.advance(
            command.execution_id,
            lambda state: controlled(state, command.type, command.data, command.actor),
        )
        await msg.ack()

    async def on_lost_task(self, msg: Msg) -> None:
        """JetStream gave up on a task (MaxDeliver reached, never acknowledged): fail its
        attempt, so the execution goes on to its failure policy instead of waiting forever."""
        try:
            advisory = orjson.loads(msg.data)
            stored = await self.bus.js.get_msg(self.bus.names.tasks_stream, int(advisory["stream_seq"]))
            task = StepTask.model_validate_json(stored.data or b"")
            command = RunStep.from_event_data(task.step)
        except (
            orjson.JSONDecodeError,
            KeyError,
            TypeError,
            ValueError,
            ValidationError,
            NotFoundError,
        ) as exc:
            log.error("dropping a lost-task advisory that leads to no task: %s", exc)
            await msg.term()
            return
        deliveries = advisory.get("deliveries")
        log.warning(
            "%s: step %s attempt %s was delivered %s times without an outcome; failing it",
            task.execution_id,
            command.step_id,
            command.attempt,
            deliveries,
        )

        await self.advance(task.execution_id, lambda state: lost(state, command, deliveries))
        await msg.ack()

    async def on_timer(self, msg: Msg) -> None:
        """A timer's message: handed back with a delay until its time, then fired (recorded as
        timer.fired; stale or repeated ones are dropped by the applier)."""
        try:
            due = TimerDue.model_validate_json(msg.data)
            fire_at = datetime.fromisoformat(due.fire_at)
        except (ValidationError, ValueError) as exc:
            log.error("dropping malformed timer: %s", exc)
            await msg.term()
            return
        wait = (fire_at - self.clock()).total_seconds()
        if wait > TIMER_EARLY:
            await msg.nak(delay=wait)  # JetStream hands it back then, whoever is running
            return
        await self.advance(due.execution_id, lambda state: fired(state, due.timer_id))
        await msg.ack()

    # -- the core ---------------------------------------------------------------------------

    async def advance(self, execution_id: str, decision: Decision) -> None:
        """Record what `decision` makes of the current state, then everything decide() asks
        for; retried from a fresh read of the stream when another writer got there first."""
        if await self._advance_in_context(execution_id, decision) and self.slots is not None:
            await self.release(execution_id)

    async def release(self, execution_id: str) -> None:
        """Free an ended execution's slot and start the queued ones that fit now."""
        assert self.slots is not None
        for started in await self.slots.release(execution_id):
            await self.advance(started, admission.dequeued)

    async def _sweep(self, stop: asyncio.Event) -> None:
        """Every sweep_seconds: slots held by executions that ended (an executor died between
        their end and the release), and executions given a slot but still recorded QUEUED (it
        died between the two), are put right; a slot whose execution was never recorded is
        freed after two minutes."""
        if self.slots is None:
            return
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.sweep_seconds)
                return
            except TimeoutError:
                pass
            try:
                await self.sweep()
            except Exception:
                log.exception("admission sweep failed; trying again in %ss", self.sweep_seconds)

    async def sweep(self) -> None:
        assert self.slots is not None
        table = await self.slots.table()
        now = time.time()
        for slot in table.running:
            last = await nats_bus.last_event(self.bus, slot.execution_id)
            if last is None:
                if now - slot.at > 120:
                    await self.release(slot.execution_id)
            elif last.type in TERMINAL_EVENTS:
                await self.release(slot.execution_id)
            elif last.type.value.startswith("notification.") and (await self._entry(slot.execution_id)).state.terminal:
                await self.release(slot.execution_id)  # the notifier's records come after the end
            elif last.type == EventType.EXECUTION_QUEUED:
                await self.advance(slot.execution_id, admission.dequeued)

    async def _advance_in_context(self, execution_id: str, decision: Decision) -> bool:
        """advance() with the execution's log and trace context bound; whether it ended the execution."""
        lock = self.locks.setdefault(execution_id, asyncio.Lock())
        # The execution's log lines name it; its events and tasks carry its trace context.
        with logs.bound(execution_id), self.spans.within(execution_id):
            return await self._advance_holding(lock, execution_id, decision)

    async def _advance_holding(self, lock: asyncio.Lock, execution_id: str, decision: Decision) -> bool:
        async with lock:
            for _ in range(20):
                entry = await self._entry(execution_id)
                if not decision(entry.state) and not await self._is_current(entry, execution_id):
                    # The message looks stale, but only to a stale cache: another replica may
                    # have moved this execution on. Judge it against the stream instead.
                    self.cache.pop(execution_id, None)
                    continue
                was_terminal = entry.state.terminal
                try:
                    tasks = await self._advance(entry, execution_id, decision)
                except ConcurrencyError:
                    self.cache.pop(execution_id, None)
                    continue
                await self._publish_tasks(entry, tasks)
                await self._publish_timers(entry)
                for observe in self.observers:
                    observe(entry.state)
                if entry.state.terminal:
                    self.locks.pop(execution_id, None)
                    self.spans.finish(entry.state)
                ended = entry.state.terminal and not was_terminal
                break
            else:
                raise RuntimeError(f"{execution_id}: could not append after 20 conflicts")
        # Outside the lock: what a settler waits for may advance this execution itself (an
        # outside event matched when a wait registers).
        for settle in self.settlers:
            await settle(execution_id)
        return ended

    async def _is_current(self, entry: _Entry, execution_id: str) -> bool:
        """Whether the cached state has folded the last event on the execution's subject."""
        if entry.fresh:
            return True
        last = await nats_bus.last_subject_seq(self.bus, execution_id)
        entry.fresh = last == entry.last_stream_seq
        return entry.fresh

    async def _entry(self, execution_id: str) -> _Entry:
        entry = self.cache.get(execution_id)
        if entry is not None:
            self.cache.move_to_end(execution_id)
            entry.fresh = False  # until proven otherwise: another replica may have appended
            return entry
        state, last = ExecutionState(execution_id=execution_id), 0
        for event, stream_seq in await nats_bus.read_execution(self.bus, execution_id):
            state, last = evolve(state, event), stream_seq
        entry = _Entry(state, last, fresh=True)
        self.cache[execution_id] = entry
        while len(self.cache) > self.cache_size:
            self.cache.popitem(last=False)
        return entry

    def _seal(self, state: ExecutionState, type_: EventType, data: dict[str, Any], actor: str) -> Event:
        return Event.sealed(
            prev_hash=state.last_hash,
            id=uuid.uuid4().hex,
            execution_id=state.execution_id,
            seq=state.seq + 1,
            type=type_,
            time=self.clock(),
            actor=actor,
            data=data,
        )

    async def _advance(self, entry: _Entry, execution_id: str, decision: Decision) -> list[RunStep]:
        """Apply the decision with the one applier (rb_engine.coordinator.applier) to the state
        first, then append the events in one pipelined write; the state is kept only once they
        are all stored."""
        with timed(metrics.DECISION_SECONDS):
            applied = apply(entry.state, decision(entry.state), self._seal)
        events, state, cancels = applied.events, applied.state, applied.cancel
        # Pipelining pays when this execution is the only one being written; under load the
        # stream interleaves executions and the pipeline would mostly fall back.
        pipelined = self.writing == 0
        self.writing += 1
        try:
            entry.last_stream_seq = await nats_bus.append_events(
                self.bus, events, entry.last_stream_seq, pipelined=pipelined
            )
        except BaseException:
            self.cache.pop(execution_id, None)  # some of the events may be stored: re-read
            raise
        finally:
            self.writing -= 1
        entry.state = state
        if state.runbook is not None:
            metrics.recorded(state.runbook.id, events, state.requested_at)
        for step_id in cancels:
            await self.bus.nc.publish(self.bus.names.cancel_subject(execution_id, step_id), b"")
        return self._pending_tasks(entry)

    @staticmethod
    def _pending_tasks(entry: _Entry) -> list[RunStep]:
        """Steps recorded as scheduled whose task this process has not sent (after a crash or a
        cache miss, they are sent again: JetStream drops the duplicates by message id)."""
        state = entry.state
        commands = []
        for sid in state.active:
            step = state.steps[sid]
            waiting = step.status == st.SCHEDULED or step.rollback_status == st.SCHEDULED
            scheduled = step.scheduled
            if waiting and scheduled and scheduled.idempotency_key not in entry.published:
                commands.append(RunStep.from_payload(scheduled))
        return commands

    async def _publish_timers(self, entry: _Entry) -> None:
        """Timers recorded as started whose message this process has not sent (after a crash
        or a cache miss, sent again: the inbox drops duplicates by message id, and a second
        firing is stale)."""
        state = entry.state
        if state.terminal:
            return
        for timer_id, fire_at in state.pending_timers().items():
            key = f"{state.execution_id}:timer:{timer_id}"
            if key in entry.published:
                continue
            message = TimerDue(
                execution_id=state.execution_id, timer_id=timer_id, fire_at=fire_at.isoformat()
            )
            await self.bus.js.publish(
                self.bus.names.timer_subject(state.execution_id),
                message.encode(),
                headers=tracing.inject({"Nats-Msg-Id": key}),
                stream=self.bus.names.inbox_stream,
            )
            entry.published.add(key)

    async def _publish_tasks(self, entry: _Entry, commands: list[RunStep]) -> None:
        if not commands:
            return
        state = entry.state
        for command in [c for c in commands if c.step_type in NOT_TASKS]:
            entry.published.add(command.idempotency_key)  # another service acts on its event
        commands = [c for c in commands if c.step_type not in NOT_TASKS]
        sends = []
        for command in commands:
            context = None
            if mentions_secrets(command.inputs):
                context = expression_context(state)
                context.pop("secrets", None)
            spec = SPECS.get(command.step_type)
            files = state.files if spec and spec.file_inputs else {}
            outputs = state.definition.step(command.step_id).outputs if command.phase == "main" else {}
            task = StepTask(
                execution_id=state.execution_id,
                step=command.event_data(),
                files=files,
                context=context,
                outputs=outputs,
                **(child_fields(state.trigger) if command.step_type == "runbook" else {}),
            )
            sends.append(
                self.bus.js.publish(
                    self.bus.names.task_subject(command.step_type),
                    task.encode(),
                    headers=tracing.inject({"Nats-Msg-Id": command.idempotency_key}),
                    stream=self.bus.names.tasks_stream,
                )
            )
        # A fan-out's tasks go out together; each is marked sent only once it is stored.
        acks = await asyncio.gather(*sends, return_exceptions=True)
        for command, ack in zip(commands, acks, strict=True):
            if isinstance(ack, BaseException):
                raise ack
            entry.published.add(command.idempotency_key)
