"""Step workers: pull tasks from RB_TASKS, run one attempt each, report the outcome.

Delivery is at-least-once: a worker that dies mid-step leaves its task unacked and another
worker runs the same attempt again, with the same Idempotency-Key. Outcomes are published with
a message id derived from that key, so a re-run after a successful report is not recorded twice.
A re-run is a new delivery of the same attempt; its reports carry `delivery` (from 2 on), and
it runs only once the record shows that delivery, and not at all if the attempt already has its
outcome (see redelivery.py): every side effect is one recorded delivery.

Never two at once: while a step runs, in-progress acks keep its task from being handed to
another worker, however long the step takes; a shell step's processes die with their worker
(see steps/supervise.py); and `holdings` lets the next worker on the host kill whatever a dead
one left running and hand its tasks back at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nats.aio.msg import Msg
from pydantic import ValidationError

from rb_common import logs, tracing
from rb_common.bus import Bus, patiently
from rb_common.consumers import durable_config
from rb_common.events import EventType
from rb_common.expressions import render
from rb_common.messages import StepOutcome, StepTask
from rb_common.payloads import StepFailed, StepStarted, StepSucceeded
from rb_common.pull import PullFeed
from rb_common.secrets import MaskingFilter, SecretResolver, StaticSecrets
from rb_common.settings import Settings
from rb_engine.attempt import Revealed, resolve_secrets, run_attempt
from rb_engine.clock import SystemClock
from rb_engine.coordinator import RunStep
from rb_engine.runner import PluginExecutor
from rb_engine.steps.base import StepContext, StepPlugin
from rb_executor import metrics
from rb_executor.service.children import BusChildren
from rb_executor.service.holdings import Holdings, reap
from rb_executor.service.redelivery import Redelivery, settle
from rb_store import artifacts as _pg_backend  # noqa: F401 (registers RB_ARTIFACTS_BACKEND=postgres)
from rb_store.secrets import step_secret_sources

log = logging.getLogger(__name__)

START_REPORT_AFTER = 1.0
HOLD_AT_MOST = 0.25  # seconds a task not yet due is held (asleep, a worker slot) rather than handed back with a delay
REPORT_GRACE = 10.0  # seconds a stopping worker waits for an outcome being recorded
# In-progress acks go out at least this often, whatever this worker's RB_TASK_ACK_WAIT: the
# durable is shared, and the last worker to start sets its AckWait for all of them.
MAX_HEARTBEAT = 1.0
REAP_EVERY = 2.0  # seconds between looks for dead workers' files on this host

Report = StepStarted | StepSucceeded | StepFailed
# The coordinator in this process (Coordinator.accept_report): takes the typed report as is.
OutcomeHandler = Callable[[str, Report], Awaitable[None]]


class Worker:
    def __init__(
        self,
        bus: Bus,
        settings: Settings,
        registry: dict[str, StepPlugin],
        *,
        concurrency: int = 32,
        consumer: str = "workers",
        secrets: dict[str, str] | None = None,
        coordinator: OutcomeHandler | None = None,
    ) -> None:
        self.bus = bus
        self.settings = settings
        self.executor = PluginExecutor(registry)
        self.concurrency = concurrency
        self.consumer = consumer
        # Step secrets: the environment, RB_SECRETS_DIR, the encrypted store (rb_store.secrets),
        # read again every few seconds; only this worker's steps ever see the values.
        self.secrets = SecretResolver(
            step_secret_sources(settings, os.environ) if secrets is None else [StaticSecrets(secrets)],
            ttl=settings.secrets_cache_seconds,
        )
        self.clock = SystemClock()
        self.ack_wait = settings.task_ack_wait
        self.running: dict[str, asyncio.Task[Any]] = {}
        self.cancelled: set[str] = set()
        self.coordinator = coordinator
        self.attempts: dict[str, asyncio.Task[Any]] = {}  # by idempotency key
        self.holdings: Holdings | None = None
        self.stop = asyncio.Event()  # run()'s: set when the worker stops
        # `runbook` steps start and follow children; a worker that stops hands its attempts
        # back, and the next one follows the same children: they are not cancelled then.
        self.children = BusChildren(bus, settings, stopping=lambda: self.stop.is_set())

    async def run(self, stop: asyncio.Event) -> None:
        self.stop = stop
        # No log line of this process shows a secret: not a URL with a token in its query (httpx
        # logs every request at INFO), not an exception that quotes an input.
        logging.getLogger("httpx").setLevel(
            max(logging.getLogger("httpx").getEffectiveLevel(), logging.WARNING)
        )
        masking = MaskingFilter(self.secrets.cached)
        handlers = list(logging.getLogger().handlers)
        for handler in handlers:
            handler.addFilter(masking)
        try:
            await asyncio.to_thread(self.secrets.values)  # read once now: a bad source says so at start
            await self._serve(stop)
        finally:
            for handler in handlers:
                handler.removeFilter(masking)

    async def _serve(self, stop: asyncio.Event) -> None:
        max_deliver = self.settings.task_max_deliver
        config = durable_config(
            self.consumer,
            self.bus.names.all_of("task"),
            ack_wait=self.ack_wait,
            max_deliver=max_deliver,
            # After a lost delivery, wait longer each time before the next (a crash loop calms
            # down); then JetStream's max-deliveries advisory has the coordinator fail the step.
            backoff=[self.ack_wait * 2**n for n in range(min(4, max_deliver - 1))],
            max_ack_pending=max(self.concurrency * 4, 64),
        )
        info = await patiently(
            lambda: self.bus.js.add_consumer(self.bus.names.tasks_stream, config), f"consumer {self.consumer}"
        )
        ack_wait = min(self.ack_wait, info.config.ack_wait or self.ack_wait)
        # Well below AckWait (= backoff[0]): a long step keeps its task, and a round of in-progress
        # acks that comes late still comes in time.
        heartbeat = min(ack_wait / 3, MAX_HEARTBEAT)
        holdings = Holdings(self.settings.home / "workers", ack_wait=ack_wait, heartbeat=heartbeat)
        await self._reap(holdings)  # before this worker's own file exists: its pid may be reused
        holdings.open()
        self.holdings = holdings
        feed = PullFeed(
            self.bus.nc,
            self.bus.names.tasks_stream,
            self.consumer,
            self.handle,
            capacity=self.concurrency,
            heartbeat=heartbeat,
            drain=self.settings.worker_shutdown_grace,
            on_beat=holdings.beat,
        )
        cancels = await self.bus.nc.subscribe(self.bus.names.all_cancels, cb=self._on_cancel)
        reaper = asyncio.ensure_future(self._reap_now_and_then(holdings, stop))
        try:
            await feed.run(stop)
        finally:
            reaper.cancel()
            await asyncio.gather(reaper, return_exceptions=True)
            await cancels.unsubscribe()
            holdings.close()
            self.holdings = None

    async def _reap(self, holdings: Holdings) -> None:
        """Kill what dead workers on this host left running and hand their tasks back."""
        if not holdings.enabled:
            return

        async def publish(subject: str, data: bytes) -> None:
            await self.bus.nc.publish(subject, data)

        try:
            if await reap(holdings.directory, publish, holdings.ack_wait):
                await self.bus.nc.flush()
        except Exception:
            log.warning("reaping dead workers failed", exc_info=True)

    async def _reap_now_and_then(self, holdings: Holdings, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=REAP_EVERY)
            if not stop.is_set():
                await self._reap(holdings)

    async def _on_cancel(self, msg: Msg) -> None:
        _, _, execution_id, step_id = msg.subject.split(".", 3)
        key = f"{execution_id}:{step_id}"
        task = self.running.get(key)
        if task is not None:
            self.cancelled.add(key)
            task.cancel()

    async def handle(self, msg: Msg) -> None:
        try:
            task = StepTask.model_validate_json(msg.data)
            command = RunStep.from_event_data(task.step)
        except (ValidationError, KeyError, ValueError) as exc:
            log.error("dropping malformed task on %s: %s", msg.subject, exc)
            await msg.term()
            return
        if command.not_before is not None:
            wait = (command.not_before - datetime.now(UTC)).total_seconds()
            if _handed_back_first(msg, command) and _delivered(msg) == 1:
                # Not due for a while (retry backoff): let JetStream hand it back when it is.
                await msg.nak(delay=max(wait, 0.0))
                return
            if wait > 0:
                # Nearly due (or clocks a little apart), or delivered before: with a backoff
                # policy JetStream adds backoff[n] - AckWait to a NAK's delay from the second
                # delivery on, so wait here; the feed's heartbeats keep the task meanwhile.
                await asyncio.sleep(wait)
        metrics.task_taken(msg, command.step_type)
        current = asyncio.current_task()
        assert current is not None
        same = self.attempts.get(command.idempotency_key)
        if same is not None and not same.done():
            await self._run_along(msg, same)
            return
        self.attempts[command.idempotency_key] = current
        if self.holdings is not None:
            self.holdings.hold(msg.reply)
        try:
            # The attempt's log lines name its execution and step; its span is the child of the
            # execution's (the task message carries its context).
            with (
                logs.bound(task.execution_id, command.step_id),
                tracing.span(
                    "rb.step",
                    parent=msg.headers,
                    kind="consumer",
                    attributes={
                        "rb.execution_id": task.execution_id,
                        "rb.step_id": command.step_id,
                        "rb.step_type": command.step_type,
                        "rb.attempt": command.attempt,
                    },
                ),
            ):
                await self._run(msg, task, command, current)
        finally:
            if self.attempts.get(command.idempotency_key) is current:
                del self.attempts[command.idempotency_key]
            if self.holdings is not None:
                self.holdings.release(msg.reply)

    async def _run_along(self, msg: Msg, same: asyncio.Task[Any]) -> None:
        """JetStream handed out again a task this worker is still running (its in-progress
        acks were lost, e.g. across a reconnect): one run, both deliveries end with it."""
        log.warning("%s delivered again while running here; not running it twice", msg.subject)
        await asyncio.wait([same])
        if not same.cancelled() and same.exception() is None:
            await msg.ack()

    async def _run(self, msg: Msg, task: StepTask, command: RunStep, current: asyncio.Task[Any]) -> None:
        key = f"{task.execution_id}:{command.step_id}"
        self.running[key] = current
        delivery = _delivered(msg) - _handed_back_first(msg, command)  # runs, this one included
        again = {"delivery": delivery} if delivery > 1 else {}
        try:
            started = StepStarted(
                step_id=command.step_id, attempt=command.attempt, phase=command.phase, **again
            )
            if again:
                # A redelivery runs only once the record shows it, and not at all when the
                # attempt already has its outcome (the ack of the run that produced it was lost).
                verdict = await settle(
                    self.bus,
                    task.execution_id,
                    command,
                    delivery,
                    lambda: self._report(task.execution_id, command, started, msg),
                )
                if verdict is Redelivery.DONE:
                    log.warning(
                        "%s: step %s attempt %s delivered again (%s) after its outcome; not run again",
                        task.execution_id, command.step_id, command.attempt, delivery,
                    )
                    await msg.ack()
                    return
            started_at = datetime.now(UTC).isoformat()
            # A quick step reports once, its outcome implying the start; a slow one says it has
            # started, so the execution shows it running. Saves two hops on most steps.
            report_start = asyncio.get_running_loop().call_later(
                START_REPORT_AFTER,
                lambda: asyncio.ensure_future(self._report(task.execution_id, command, started, msg)),
            )
            if again:
                report_start.cancel()  # reported above
            try:
                secrets = self.secrets.fresh()
                if secrets is None:  # re-read once per RB_SECRETS_CACHE_SECONDS, off the loop
                    secrets = await asyncio.to_thread(self.secrets.values)
                revealed = Revealed(secrets.values())
                began = time.perf_counter()
                outcome = await run_attempt(
                    command,
                    self.executor,
                    self._context(task, command, secrets, revealed),
                    task.outputs,
                    revealed,
                )
            finally:
                report_start.cancel()
            succeeded = outcome.TYPE == EventType.STEP_SUCCEEDED
            log.debug("%s attempt %d: %s", command.step_type, command.attempt, outcome.TYPE.value)
            if not succeeded:
                tracing.failed("step failed")
            metrics.step_finished(
                command.step_type, "succeeded" if succeeded else "failed", time.perf_counter() - began
            )
            reporting = asyncio.ensure_future(
                self._report(
                    task.execution_id,
                    command,
                    outcome.model_copy(update={"started_at": started_at, **again}),
                    msg,
                )
            )
            try:
                await asyncio.shield(reporting)
            except asyncio.CancelledError:
                if key not in self.cancelled:
                    # Stopping while the outcome is being recorded: let that finish, so the
                    # attempt is not handed back (and run again) once its outcome is in.
                    await asyncio.wait([reporting], timeout=REPORT_GRACE)
                    if reporting.done() and not reporting.cancelled() and reporting.exception() is None:
                        await msg.ack()
                raise
            await msg.ack()
        except asyncio.CancelledError:
            if key not in self.cancelled:
                raise  # shutting down: the feed hands the task back to the other workers
            # The coordinator recorded the cancellation itself; nothing to report.
            self.cancelled.discard(key)
            await msg.ack()
        finally:
            self.running.pop(key, None)

    def _context(
        self, task: StepTask, command: RunStep, secrets: dict[str, str], revealed: Revealed
    ) -> StepContext:
        context: dict[str, Any] = {**(task.context or {}), "secrets": secrets}
        return StepContext(
            execution_id=task.execution_id,
            step_id=command.step_id,
            attempt=command.attempt,
            idempotency_key=command.idempotency_key,
            settings=self.settings,
            clock=self.clock,
            base_dir=Path("."),
            files=task.files,
            evaluate=lambda expression: render(
                expression if "${" in expression else "${" + expression + "}", context
            ),
            resolve_secrets=lambda inputs: resolve_secrets(
                command.step_type, inputs, lambda: context, revealed
            ),
            children=self.children,
            depth=task.depth,
            requester=task.requester,
        )

    async def _report(self, execution_id: str, command: RunStep, report: Report, task: Msg) -> None:
        """Hand the outcome to the coordinator in this process if there is one, else (or if it
        fails) publish it to the inbox for whichever coordinator replica takes it.

        In-process, the outcome becomes durable when the coordinator has recorded it as an
        event; until then the task is unacked, as it is until a published outcome is stored, so
        a crash in between re-runs the attempt either way. It saves the inbox's store-and-deliver
        hop on every step."""
        if self.coordinator is not None:
            try:
                await self.coordinator(execution_id, report)
                return
            except Exception:
                log.warning("in-process coordinator failed on an outcome; publishing it", exc_info=True)
        type_ = report.TYPE
        outcome = StepOutcome(execution_id=execution_id, type=type_.value, data=report.dump())
        suffix = "started" if type_ == EventType.STEP_STARTED else "done"
        if isinstance(report, StepStarted) and "delivery" in report.model_fields_set:
            suffix += f":{report.delivery}"  # each delivery's start is news, not a duplicate
        await self.bus.js.publish(
            self.bus.names.result_subject(execution_id),
            outcome.encode(),
            # The task's trace context (the execution's) goes back with its outcome.
            headers={"Nats-Msg-Id": f"{command.idempotency_key}:{suffix}", **tracing.carried(task.headers)},
            stream=self.bus.names.inbox_stream,
        )


def _delivered(msg: Msg) -> int:
    """Which delivery of its task `msg` is (1 unless JetStream handed it out before)."""
    try:
        return int(msg.metadata.num_delivered or 1)
    except Exception:  # not a JetStream message (tests): the first
        return 1


def _handed_back_first(msg: Msg, command: RunStep) -> bool:
    """Whether the task's first delivery is handed back unrun, as not due for a while: decided
    from when the task was stored, so every delivery of it agrees (and a re-run's `delivery`
    counts runs, not that hand-back)."""
    if command.not_before is None:
        return False
    try:
        stored = msg.metadata.timestamp
    except Exception:
        return False
    return (command.not_before - stored).total_seconds() >= HOLD_AT_MOST
