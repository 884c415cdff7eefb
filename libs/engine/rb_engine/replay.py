"""Replay: refold a recorded stream through the coordinator and compare, step by step.

Like Temporal's Replayer: the coordinator is re-run against history and every decision it makes
must match the recorded one. Pure steps are re-executed; external steps are fed their recorded
raw results, from which outputs are extracted again.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace
from typing import Any

from rb_common.canonical import canonical_json, digest
from rb_common.errors import ExpressionError
from rb_common.events import DECIDED_EVENTS, Event, EventType
from rb_common.expressions import mentions_secrets
from rb_common.outputs import OutputError, extract_outputs
from rb_common.payloads import ExecutionRequested, StepScheduled, StepSucceeded
from rb_common.payloads import StepFailed as StepFailedPayload
from rb_common.secrets import mask
from rb_common.settings import Settings
from rb_common.step_specs import SPECS
from rb_common.upcast import upcast_all
from rb_engine import visual_replay
from rb_engine.artifacts import artifact_store
from rb_engine.attempt import Revealed, resolve_secrets
from rb_engine.clock import FakeClock
from rb_engine.coordinator import (
    CancelStep,
    Emit,
    ExecutionState,
    RunStep,
    approvals,
    decide,
    evolve,
    retry_plan,
)
from rb_engine.coordinator.commands import StartTimer
from rb_engine.coordinator.context import evaluate_in, expression_context
from rb_engine.runner import StepExecutor
from rb_engine.steps.base import StepContext, StepFailed


@dataclass(frozen=True)
class Deviation:
    step: str | None
    field: str
    recorded: Any
    replayed: Any
    seq: int | None = None

    def __str__(self) -> str:
        where = f"step '{self.step}'" if self.step else "execution"
        at = f" (event {self.seq})" if self.seq else ""
        return (
            f"{where}: {self.field}{at}: recorded {_short(self.recorded)}, replayed {_short(self.replayed)}"
        )


@dataclass
class ReplayReport:
    execution_id: str
    state: ExecutionState
    deviations: list[Deviation] = field(default_factory=list)
    steps_checked: list[str] = field(default_factory=list)
    # by step: (fine, line) to print under it, e.g. screenshot diffs
    notes: dict[str, list[tuple[bool, str]]] = field(default_factory=dict)

    @property
    def verified(self) -> bool:
        return not self.deviations

    def deviating_steps(self) -> set[str | None]:
        return {d.step for d in self.deviations}


def _short(value: Any) -> str:
    text = canonical_json(value)
    return text if len(text) <= 200 else text[:197] + "..."


def _decided(event: Event) -> bool:
    if event.type == EventType.EXECUTION_ABORTED and event.data.get("refused") is True:
        return False  # the executor refused the start (revision not APPROVED): a fact, not decide()'s
    return (
        event.type in DECIDED_EVENTS
        # inputs that did not render; a step the coordinator ran itself (branch, wait, ...)
        or (
            event.type in (EventType.STEP_FAILED, EventType.STEP_SUCCEEDED)
            and event.data.get("stage") in ("inputs", "coordinator")
        )
        or approvals.is_decided_outcome(event)
    )


def _command_data(command: Emit | RunStep | StartTimer) -> tuple[EventType, dict[str, Any]]:
    if isinstance(command, RunStep):
        return EventType.STEP_SCHEDULED, command.event_data()
    if isinstance(command, StartTimer):
        return EventType.TIMER_STARTED, command.payload.dump()
    return command.type, command.data


def _key(type_: EventType, data: dict[str, Any]) -> tuple[Any, ...]:
    return (type_, data.get("step_id"), data.get("phase"), data.get("name"))


class Replayer:
    def __init__(
        self,
        pure_executor: StepExecutor,
        settings: Settings,
        *,
        live: bool = False,
        secrets: dict[str, str] | None = None,
    ) -> None:
        self.pure_executor = pure_executor
        self.settings = settings
        # --live: external steps run again for real, with their recorded inputs, and their
        # results are diffed against the recorded ones (did the world change?).
        self.live = live
        self.secrets = secrets or {}
        self._files: dict[str, str] = {}

    async def replay(self, events: list[Event]) -> ReplayReport:
        if not events or events[0].type != EventType.EXECUTION_REQUESTED:
            raise ValueError("a recorded execution starts with execution.requested")
        events = upcast_all(events)  # decisions are compared in the current schema
        state = evolve(ExecutionState(), events[0])
        report = ReplayReport(execution_id=events[0].execution_id, state=state)
        scheduled: dict[tuple[str, str], StepScheduled] = {}
        self._files = events[0].payload_as(ExecutionRequested).files or {}
        for index, event in enumerate(events[1:], start=2):
            if event.seq != index:
                report.deviations.append(
                    Deviation(event.data.get("step_id"), "sequence", index, event.seq, event.seq)
                )
            if _decided(event):
                self._check_decision(state, event, report)
            if event.type == EventType.STEP_SCHEDULED:
                step = event.payload_as(StepScheduled)
                scheduled[(step.step_id, step.phase)] = step
            elif event.type == EventType.STEP_SUCCEEDED and not _decided(event):
                await self._check_success(state, event, scheduled, report)
            elif event.type == EventType.STEP_FAILED and not _decided(event):
                self._check_failure(state, event, report)
            state = evolve(state, event)
        leftover = [c for c in decide(state) if not isinstance(c, CancelStep)]
        if leftover or not state.terminal:
            names = [_command_data(c)[0].value for c in leftover if not isinstance(c, CancelStep)]
            report.deviations.append(
                Deviation(None, "end", "recorded stream ends here", names or state.status, events[-1].seq)
            )
        report.state = state
        report.steps_checked = list(state.order)
        return report

    def _check_decision(self, state: ExecutionState, event: Event, report: ReplayReport) -> None:
        step = event.data.get("step_id")
        candidates = [_command_data(c) for c in decide(state) if not isinstance(c, CancelStep)]
        wanted = _key(event.type, event.data)
        match = next((c for c in candidates if _key(*c) == wanted), None)
        if match is None:
            replayed = [
                f"{t.value} {d.get('step_id') or d.get('name') or ''}".strip() for t, d in candidates
            ] or "nothing"
            report.deviations.append(Deviation(step, "decision", event.type.value, replayed, event.seq))
            return
        _, data = match
        for name in sorted(set(data) | set(event.data)):
            if canonical_json(data.get(name)) != canonical_json(event.data.get(name)):
                report.deviations.append(
                    Deviation(
                        step, f"{event.type.value}.{name}", event.data.get(name), data.get(name), event.seq
                    )
                )

    async def _check_success(
        self,
        state: ExecutionState,
        event: Event,
        scheduled: dict[tuple[str, str], StepScheduled],
        report: ReplayReport,
    ) -> None:
        data = event.payload_as(StepSucceeded)
        step_id, phase = data.step_id, data.phase
        raw = data.result
        if data.digest is not None and digest(raw) != data.digest:
            report.deviations.append(Deviation(step_id, "result digest", data.digest, digest(raw), event.seq))
        if phase == "main" and not approvals.is_decided_outcome(event):  # decided: checked whole
            try:
                outputs = extract_outputs(state.definition.step(step_id).outputs, raw)
            except OutputError as exc:
                outputs = {"error": str(exc)}
            for name in sorted(set(outputs) | set(data.outputs)):
                recorded = data.outputs.get(name)
                if canonical_json(recorded) != canonical_json(outputs.get(name)):
                    report.deviations.append(
                        Deviation(step_id, f"outputs.{name}", recorded, outputs.get(name), event.seq)
                    )
        command = scheduled.get((step_id, phase))
        spec = SPECS.get(command.step_type) if command else None
        if command is not None and command.step_type == "ui_screenshot":
            await self._check_screenshot(state, command, raw, event.seq, report)
            return
        if command is None or spec is None or (spec.external and not self.live):
            return
        if not self.secrets and mentions_secrets(command.inputs):
            # Its inputs read secrets this replay does not have (the API never has them): its
            # recorded result is masked and cannot be recomputed here.
            return
        replayed = await self._rerun(state, RunStep.from_payload(command))
        if canonical_json(replayed) != canonical_json(raw):
            what = "result (live)" if spec.external else "result (re-executed)"
            report.deviations.append(Deviation(step_id, what, raw, replayed, event.seq))

    async def _rerun(self, state: ExecutionState, command: RunStep) -> Any:
        assert state.now is not None, "replayed state has folded at least one event"
        clock = FakeClock(state.now)
        revealed = Revealed(self.secrets.values())
        ctx = StepContext(
            execution_id=state.execution_id,
            step_id=command.step_id,
            attempt=command.attempt,
            idempotency_key=command.idempotency_key,
            settings=self.settings,
            clock=clock,
            files=self._files,
            evaluate=lambda expr: evaluate_in(state, expr),
            resolve_secrets=lambda inputs: resolve_secrets(
                command.step_type, inputs, lambda: expression_context(state, self.secrets), revealed
            ),
        )
        try:
            raw = await asyncio.wait_for(
                self.pure_executor.execute(command, command.inputs, ctx), command.timeout
            )
        except StepFailed as exc:
            return {"error": mask(exc.message, revealed)}
        except ExpressionError as exc:
            return {"error": mask(str(exc), revealed)}
        except TimeoutError:
            return {"error": f"timed out after {command.timeout:g}s"}
        return mask(raw, revealed)

    async def _check_screenshot(
        self, state: ExecutionState, command: StepScheduled, raw: Any, seq: int, report: ReplayReport
    ) -> None:
        """Recorded images still hash to their digests; with --live, the page captured again."""
        store = artifact_store(self.settings)
        checks = [visual_replay.verify_recorded(store, raw)]
        if self.live and not self.secrets and mentions_secrets(command.inputs):
            pass  # cannot be captured again without the secrets its inputs read
        elif self.live:
            inputs = {k: v for k, v in command.inputs.items() if k != "baseline"}
            rerun = replace(RunStep.from_payload(command), inputs=inputs)
            replayed = await self._rerun(state, rerun)
            checks.append(visual_replay.live_diff(store, raw, replayed, command.inputs))
        for check in checks:
            report.notes.setdefault(command.step_id, []).extend(check.notes)
            for name, recorded, replayed_value in check.problems:
                report.deviations.append(Deviation(command.step_id, name, recorded, replayed_value, seq))

    def _check_failure(self, state: ExecutionState, event: Event, report: ReplayReport) -> None:
        data = event.payload_as(StepFailedPayload)
        if data.detail is not None and data.phase == "main":
            check = visual_replay.verify_recorded(artifact_store(self.settings), data.detail)
            report.notes.setdefault(data.step_id, []).extend(check.notes)
            for name, recorded, replayed in check.problems:
                report.deviations.append(Deviation(data.step_id, name, recorded, replayed, event.seq))
        if data.rollback or data.will_retry is None:
            return
        will_retry, delay = retry_plan(state, data.step_id, data.attempt, bool(data.retryable))
        if will_retry != data.will_retry:
            report.deviations.append(
                Deviation(data.step_id, "will_retry", data.will_retry, will_retry, event.seq)
            )
        elif will_retry and abs(delay - float(data.retry_delay or 0)) > 1e-6:
            report.deviations.append(
                Deviation(data.step_id, "retry_delay", data.retry_delay, delay, event.seq)
            )
