"""The in-process runner: drives the pure coordinator with asyncio and records every event.

Used by `rb run`, `rb test` and `rb replay --live`; the distributed executor drives the same
coordinator from JetStream instead.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from rb_common import payloads as ev
from rb_common.errors import RbError
from rb_common.events import Event, EventType
from rb_common.model import Runbook
from rb_common.ports import EventStore
from rb_common.settings import Settings
from rb_common.snapshot import requested_data
from rb_engine.attempt import Revealed, StepExecutor, cancelled_outcome, resolve_secrets, run_attempt
from rb_engine.child_runs import ChildRuns, depth_of, requester_of
from rb_engine.clock import Clock
from rb_engine.coordinator import ExecutionState, RunStep, approvals
from rb_engine.coordinator.applier import Fact, accepted, apply, controlled, due, requested
from rb_engine.coordinator.context import evaluate_in, expression_context
from rb_engine.coordinator.inbound import scripted_events, waiting_for_outside
from rb_engine.steps.base import StepContext, StepFailed, StepPlugin


class PluginExecutor:
    """Runs each step with its registered plugin."""

    def __init__(self, registry: dict[str, StepPlugin]) -> None:
        self.registry = registry

    async def execute(self, command: RunStep, inputs: Any, ctx: StepContext) -> Any:
        plugin = self.registry.get(command.step_type)
        if plugin is None:
            raise StepFailed(
                f"step type '{command.step_type}' is not supported by this executor", retryable=False
            )
        inputs = ctx.resolve_secrets(inputs)
        problems = plugin.validate(inputs)
        if problems:
            raise StepFailed("invalid inputs: " + "; ".join(problems), retryable=False)
        return await plugin.run(inputs, ctx)


@dataclass
class RunRequest:
    runbook: Runbook
    params: dict[str, Any] = field(default_factory=dict)
    env: dict[str, Any] = field(default_factory=dict)
    trigger: dict[str, Any] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)
    actor: str = "cli"
    legal_basis: str | None = None
    execution_id: str | None = None
    concurrency: int | None = None
    # The referenced files, when the caller has them; otherwise they are snapshotted from the
    # runbook's own `files` and, for a runbook read from disk, the files in `base_dir`.
    files: dict[str, str] | None = None
    base_dir: Path | None = None
    # A sub-runbook's run: its parent {execution_id, step_id} and depth (rb_engine.child_runs).
    parent: dict[str, Any] | None = None
    depth: int | None = None

    def event_data(self) -> dict[str, Any]:
        """The data of `execution.requested`: rb_common.snapshot.requested_data, the one builder."""
        return requested_data(
            self.runbook,
            params=self.params,
            env=self.env,
            trigger=self.trigger,
            facts=self.facts,
            actor=self.actor,
            legal_basis=self.legal_basis,
            concurrency=self.concurrency,
            files=self.files,
            base_dir=self.base_dir,
            parent=self.parent,
            depth=self.depth,
        )


def new_id() -> str:
    return uuid.uuid4().hex


class Runner:
    def __init__(
        self,
        store: EventStore,
        executor: StepExecutor,
        clock: Clock,
        settings: Settings,
        *,
        secrets: dict[str, str] | None = None,
        base_dir: Path = Path("."),
        http_transport: httpx.AsyncBaseTransport | None = None,
        on_event: Callable[[Event, ExecutionState], None] | None = None,
        decide_approval: Callable[[ev.ApprovalRequested], list[ev.ApprovalDecided]] | None = None,
        children: ChildRuns | None = None,
        events: dict[str, Any] | None = None,
    ) -> None:
        self.store = store
        self.executor = executor
        self.clock = clock
        self.settings = settings
        self.secrets = dict(secrets or {})
        self.base_dir = base_dir
        self.http_transport = http_transport
        self.on_event = on_event
        # Who decides approval steps in this process (a fixture's script); without it an
        # approval waits for its timeout.
        self.decide_approval = decide_approval
        self.children = children  # runs the sub-runbooks of `runbook` steps
        # A fixture's scripted outside events: step id -> the data its wait_for_event receives.
        self.events = dict(events or {})
        self.state = ExecutionState()
        # None wakes the loop to look again (a cancel requested from outside).
        self._outcomes: asyncio.Queue[ev.StepStarted | ev.StepSucceeded | ev.StepFailed | None] = (
            asyncio.Queue()
        )
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._cancelled: set[asyncio.Task[None]] = set()  # stopped; their late outcomes are stale
        self._files: dict[str, str] = {}

    def _seal(self, state: ExecutionState, type_: EventType, data: dict[str, Any], actor: str) -> Event:
        return Event.sealed(
            prev_hash=state.last_hash,
            id=new_id(),
            execution_id=state.execution_id,
            seq=state.seq + 1,
            type=type_,
            time=self.clock.now(),
            actor=actor,
            data=data,
        )

    def _observe(self, event: Event, state: ExecutionState) -> None:
        self.store.append(event)
        if self.on_event:
            self.on_event(event, state)

    def _apply(self, facts: list[Fact]) -> None:
        """The one applier (rb_engine.coordinator.applier): facts and the decisions that follow
        are recorded; the attempts it schedules start, the ones it cancels are stopped."""
        applied = apply(self.state, facts, self._seal, self._observe)
        self.state = applied.state
        for step_id in applied.cancel:
            task = self._tasks.pop(step_id, None)
            if task is not None:
                task.cancel()
                self._cancelled.add(task)
        for command in applied.run:
            self._tasks[command.step_id] = asyncio.create_task(self._attempt(command))
        asked = [e.payload for e in applied.events if e.type == EventType.APPROVAL_REQUESTED]
        for request in asked if self.decide_approval is not None else []:
            assert isinstance(request, ev.ApprovalRequested) and self.decide_approval is not None
            for decision in self.decide_approval(request):
                self._apply(approvals.decided(self.state, decision.dump(), decision.actor))
        scripted = scripted_events(self.state, self.events)
        if scripted:
            self._apply(scripted)

    async def run(self, request: RunRequest) -> ExecutionState:
        execution_id = request.execution_id or new_id()
        self.state = ExecutionState(execution_id=execution_id)
        data = request.event_data()
        self._files = data["files"]
        try:
            self._apply(requested(self.state, data, request.actor))
            while not (self.state.terminal and not self._tasks):
                if not self._tasks and not self.state.pending_timers():
                    waiting = approvals.pending(self.state)
                    if waiting:
                        raise RbError(
                            f"execution {execution_id} waits for approval of step '{waiting[0]}', which "
                            "nobody can give in this process (a fixture scripts it: approvals)"
                        )
                    outside = waiting_for_outside(self.state)
                    if outside:
                        raise RbError(
                            f"step '{outside}' waits for an outside event, which a run in this "
                            "process cannot receive: give it a timeout, script the event in a "
                            "fixture's `events` (rb test), or run it through the services"
                        )
                    raise RuntimeError(f"execution {execution_id} is stuck: nothing runs, not finished")
                outcome = await self._next_outcome()
                # Timers whose time came before this news fire first (timer.fired).
                self._apply(due(self.state, self.clock.now()))
                if outcome is None:
                    continue
                if not isinstance(outcome, ev.StepStarted):
                    self._tasks.pop(outcome.step_id, None)
                # The typed report as the attempt built it (what `reported` would parse back from
                # its dump: the same facts, byte for byte).
                self._apply(accepted(self.state, outcome))
            return self.state
        finally:
            for task in [*self._tasks.values(), *self._cancelled]:
                task.cancel()
            await asyncio.gather(*self._tasks.values(), *self._cancelled, return_exceptions=True)

    def cancel(self, actor: str, reason: str) -> None:
        """Ask the running execution to cancel (as an operator's cancel would): running steps are
        stopped, nothing new starts. Used for the child of a cancelled `runbook` step."""
        data = {"requested_via": "parent", "reason": reason}
        self._apply(controlled(self.state, "execution.cancel_requested", data, actor))
        self._outcomes.put_nowait(None)

    async def _next_outcome(self) -> ev.StepStarted | ev.StepSucceeded | ev.StepFailed | None:
        """The next outcome, or None when the earliest pending timer is due first."""
        timers = self.state.pending_timers()
        if not timers or not self._outcomes.empty():
            return await self._outcomes.get()
        timeout = self.clock.wait_timeout(min(timers.values()), idle=not self._tasks)
        try:
            return await asyncio.wait_for(self._outcomes.get(), timeout)
        except TimeoutError:
            return None

    async def _attempt(self, command: RunStep) -> None:
        try:
            if command.not_before is not None:
                await self.clock.sleep((command.not_before - self.clock.now()).total_seconds())
            started = ev.StepStarted(step_id=command.step_id, attempt=command.attempt, phase=command.phase)
            self._outcomes.put_nowait(started)
            revealed = Revealed(self.secrets.values())
            ctx = StepContext(
                execution_id=self.state.execution_id,
                step_id=command.step_id,
                attempt=command.attempt,
                idempotency_key=command.idempotency_key,
                settings=self.settings,
                clock=self.clock,
                base_dir=self.base_dir,
                http_transport=self.http_transport,
                evaluate=self._evaluator(),
                files=self._files,
                resolve_secrets=lambda inputs: resolve_secrets(
                    command.step_type, inputs, lambda: expression_context(self.state, self.secrets), revealed
                ),
                children=self.children,
                depth=depth_of(self.state.trigger),
                requester=requester_of(self.state.trigger),
            )
            specs = self.state.definition.step(command.step_id).outputs
            outcome = await run_attempt(command, self.executor, ctx, specs, revealed)
        except asyncio.CancelledError:
            outcome = cancelled_outcome(command)
        self._outcomes.put_nowait(outcome)

    def _evaluator(self) -> Callable[[str], Any]:
        return lambda expression: evaluate_in(self.state, expression, self.secrets)
