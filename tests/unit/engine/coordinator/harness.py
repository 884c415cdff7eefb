"""A pure driver for the coordinator: no asyncio, no clock, scripted step outcomes."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from rb_common.events import Event, EventType
from rb_common.loader import load_runbook_text
from rb_engine.coordinator import CancelStep, Emit, ExecutionState, RunStep, decide, evolve, retry_plan

T0 = datetime(2025, 1, 1, tzinfo=UTC)


@dataclass
class Drive:
    """Runs decide/evolve to the end; `script[step]` lists outcomes per attempt:
    a dict result, ("fail", retryable) or "hang" (never finishes until cancelled)."""

    yaml_text: str
    script: dict[str, list[Any]] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    batches: list[list[str]] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    state: ExecutionState = field(default_factory=ExecutionState)
    tick: float = 0.0

    def record(self, type_: EventType, data: dict[str, Any]) -> None:
        self.tick += 0.001
        event = Event.sealed(
            prev_hash=self.state.last_hash,
            id=f"e{len(self.events) + 1}",
            execution_id="ex1",
            seq=len(self.events) + 1,
            type=type_,
            time=T0 + timedelta(seconds=self.tick),
            data=data,
        )
        self.events.append(event)
        self.state = evolve(self.state, event)

    def run(self, max_rounds: int = 1000) -> ExecutionState:
        runbook, _ = load_runbook_text(self.yaml_text)
        self.record(
            EventType.EXECUTION_REQUESTED,
            {"runbook": runbook.snapshot(), "params": self.params, "facts": self.facts},
        )
        running: dict[str, RunStep] = {}
        for _ in range(max_rounds):
            started: list[str] = []
            progressed = True
            while progressed:
                progressed = False
                for command in decide(self.state):
                    if isinstance(command, CancelStep):
                        if command.step_id in running and command.step_id not in self.cancelled:
                            self.cancelled.append(command.step_id)
                            run = running.pop(command.step_id)
                            self.record(
                                EventType.STEP_FAILED,
                                {
                                    "step_id": run.step_id,
                                    "attempt": run.attempt,
                                    "phase": run.phase,
                                    "error": "cancelled",
                                    "cancelled": True,
                                    "retryable": False,
                                },
                            )
                            progressed = True
                        continue
                    if isinstance(command, Emit):
                        self.record(command.type, command.data)
                    else:
                        self.record(EventType.STEP_SCHEDULED, command.event_data())
                        self.record(
                            EventType.STEP_STARTED,
                            {"step_id": command.step_id, "attempt": command.attempt, "phase": command.phase},
                        )
                        running[command.step_id] = command
                        started.append(command.step_id)
                    progressed = True
            if started:
                self.batches.append(started)
            if self.state.terminal:
                return self.state
            finishable = [r for r in running.values() if self._outcome(r) != "hang"]
            if not finishable:
                # Everything left hangs: the runner would time them out.
                for run in list(running.values()):
                    running.pop(run.step_id)
                    self._fail(run, f"timed out after {run.timeout:g}s", True)
                continue
            for run in finishable:
                running.pop(run.step_id)
                outcome = self._outcome(run)
                if isinstance(outcome, tuple):
                    self._fail(run, "failed", outcome[1])
                else:
                    self.record(
                        EventType.STEP_SUCCEEDED,
                        {
                            "step_id": run.step_id,
                            "attempt": run.attempt,
                            "phase": run.phase,
                            "result": outcome,
                            "outputs": outcome if run.phase == "main" else {},
                        },
                    )
        raise AssertionError("coordinator did not finish")

    def _outcome(self, run: RunStep) -> Any:
        key = run.step_id if run.phase == "main" else f"{run.step_id}.{run.phase}"
        outcomes = self.script.get(key, [{}])
        return outcomes[min(run.attempt, len(outcomes)) - 1]

    def _fail(self, run: RunStep, error: str, retryable: bool) -> None:
        data: dict[str, Any] = {
            "step_id": run.step_id,
            "attempt": run.attempt,
            "phase": run.phase,
            "error": error,
            "retryable": retryable,
        }
        if run.phase == "main":
            will_retry, delay = retry_plan(self.state, run.step_id, run.attempt, retryable)
            data.update(will_retry=will_retry, retry_delay=delay)
        self.record(EventType.STEP_FAILED, data)

    def types(self, step_id: str | None = None) -> list[str]:
        return [e.type.value for e in self.events if step_id is None or e.data.get("step_id") == step_id]
