"""Sub-runbooks in the executor service: the `ChildRuns` port of the workers.

A `runbook` step's attempt (on whichever worker runs it) starts its child the way every other
door does, with a TriggerRequest on `rb.trigger.<runbook>`: the definition of the runbook's
current APPROVED revision from the registry, `trigger.revision` for the coordinator's admission
check, `parent` and `depth` recorded in the child's `execution.requested`. The child's id comes
from the attempt's idempotency key and is the trigger's `Nats-Msg-Id`, and the coordinator
records `execution.requested` only for an execution that does not exist yet: a redelivered
attempt (its worker died) follows the same child instead of starting another.

The attempt then follows the child's stream (`rb.exec.<child>`, an ordered consumer from the
first event) until the child ends; its outcome becomes the step's, reported like any other
step outcome. While JetStream cannot answer (a leader election, a lost quorum) each of these
calls is tried again (`rb_common.bus.patiently`) until the step's own timeout: the child goes
on regardless, and a parent failed for a moment's election would be a false failure. The
registry's database is read the same way while it cannot be reached (a restart, a failover).
Cancelled (the parent was cancelled, or the step timed out), it sends the child a cancel on
`rb.control.<child>` before it lets go; not when its worker is stopping (the attempt is handed
back to another worker, which follows the same child).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from nats.js.api import DeliverPolicy
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from rb_common.bus import Bus, patiently
from rb_common.events import Event, EventType
from rb_common.messages import ControlCommand, TriggerRequest
from rb_common.params import ParamsError, resolve_params
from rb_common.settings import Settings
from rb_common.snapshot import requested_data
from rb_common.upcast import upcast
from rb_engine.child_runs import ChildError, ChildOutcome, ChildRequest
from rb_engine.coordinator import ExecutionState, evolve
from rb_engine.local_children import outcome_of
from rb_engine.steps.base import StepFailed
from rb_store.db import database_url, make_engine, transient_database_error
from rb_store.registry import Registered, approved_one

log = logging.getLogger(__name__)

PUBLISH_TIMEOUT = 5.0


class BusChildren:
    def __init__(
        self,
        bus: Bus,
        settings: Settings,
        engine: Engine | None = None,
        stopping: Callable[[], bool] = lambda: False,
    ) -> None:
        self.bus = bus
        self.stopping = stopping
        self.settings = settings
        self._engine = engine

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = make_engine(database_url(self.settings))
        return self._engine

    async def run(self, request: ChildRequest) -> ChildOutcome:
        if not await self._exists(request.execution_id):
            await self._start(request)
        try:
            state = await self._follow(request.execution_id)
        except asyncio.CancelledError:
            if self.stopping():
                raise  # handed back: the next worker follows the same child
            with contextlib.suppress(Exception):
                await asyncio.shield(self._cancel(request))
            raise
        return outcome_of(state)

    async def _exists(self, execution_id: str) -> bool:
        names = self.bus.names
        try:
            await patiently(
                lambda: self.bus.js.get_last_msg(names.events_stream, names.exec_subject(execution_id)),
                "the child's last event",
            )
        except Exception:  # not there (NotFoundError), or not known: starting it again is a no-op
            return False
        return True

    async def _start(self, request: ChildRequest) -> None:
        registered = await self._approved(request.runbook_id)
        if registered is None:
            raise ChildError(f"{request.runbook_id} is not a registered runbook with an APPROVED revision")
        runbook = registered.runbook
        try:
            params = resolve_params(runbook, request.params)
        except ParamsError as exc:
            raise ChildError(str(exc)) from None
        data = requested_data(
            runbook,
            params=params,
            trigger={**request.trigger(), "revision": registered.revision},
            actor=request.actor,
            files=dict(runbook.files),
            parent=request.parent,
            depth=request.depth,
        )
        trigger = TriggerRequest(execution_id=request.execution_id, actor=request.actor, data=data)
        try:  # the same message id each time: JetStream keeps one
            await patiently(
                lambda: self.bus.js.publish(
                    self.bus.names.trigger_subject(request.runbook_id),
                    trigger.encode(),
                    headers={"Nats-Msg-Id": request.execution_id},
                    stream=self.bus.names.triggers_stream,
                    timeout=PUBLISH_TIMEOUT,
                ),
                "the child's trigger",
            )
        except Exception as exc:  # NATS unreachable or slow: a later attempt may get through
            raise StepFailed(
                f"cannot publish the child's trigger: {type(exc).__name__}", retryable=True
            ) from None

    async def _approved(self, runbook_id: str) -> Registered | None:
        """The registry's APPROVED revision. While the database cannot be reached (restarting,
        failing over: `transient_database_error`) the read is tried again until the step's own
        timeout cancels the attempt; any other database error fails the attempt."""
        pause = 0.2
        while True:
            try:
                return await asyncio.to_thread(approved_one, self.engine, runbook_id)
            except SQLAlchemyError as exc:
                if not transient_database_error(exc):
                    raise StepFailed(
                        f"cannot read the registry: {type(exc).__name__}", retryable=True
                    ) from None
                log.warning(
                    "cannot read the registry for %s (%s); trying again in %.1fs",
                    runbook_id,
                    str(exc).splitlines()[0],  # the driver's message, not the statement
                    pause,
                )
                await asyncio.sleep(pause)
                pause = min(pause * 2, 5.0)

    async def _follow(self, execution_id: str) -> ExecutionState:
        """Fold the child's events as they come until it has ended."""
        subject = self.bus.names.exec_subject(execution_id)
        sub = await patiently(
            lambda: self.bus.js.subscribe(subject, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL),
            "the child's events",
        )
        state = ExecutionState()
        try:
            async for msg in sub.messages:
                event = upcast(Event.from_json(msg.data))
                if event.seq != state.seq + 1:
                    continue  # not the next one (cannot happen on an ordered consumer)
                state = evolve(state, event)
                if state.terminal:
                    return state
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        raise ChildError(f"the stream of child execution {execution_id} ended early")

    async def _cancel(self, request: ChildRequest) -> None:
        data: dict[str, Any] = {
            "requested_via": "parent",
            "reason": f"its parent step {request.parent_step_id} was cancelled",
        }
        command = ControlCommand(
            execution_id=request.execution_id,
            type=EventType.EXECUTION_CANCEL_REQUESTED.value,
            actor=request.actor,
            data=data,
        )
        await self.bus.js.publish(
            self.bus.names.control_subject(request.execution_id),
            command.encode(),
            headers={"Nats-Msg-Id": f"{request.execution_id}:cancel:parent"},
            stream=self.bus.names.inbox_stream,
            timeout=PUBLISH_TIMEOUT,
        )
