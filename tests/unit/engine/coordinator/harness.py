"""A pure driver for the coordinator: no asyncio, no clock, scripted step outcomes."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from rb_common.events import Event, EventType
from rb_common.loader import load_runbook_text
from rb_engine.coordinator import ExecutionState, RunStep
from rb_engine.coordinator.applier import Applied, Fact, apply, fired, reported, requested

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

    def seal(self, state: ExecutionState, type_: EventType, data: dict[str, Any], actor: str) -> Event:
        self.tick += 0.001
        return Event.sealed(
            prev_hash=state.last_hash,
            id=f"e{len(self.events) + 1}",
            execution_id="ex1",
            seq=state.seq + 1,
            type=type_,
            time=T0 + timedelta(seconds=self.tick),
            actor=actor,
            data=data,
        )

    def apply(self, facts: list[Fact]) -> Applied:
        """Through the one applier, exactly as the runner and the executor service record."""
        applied = apply(self.state, facts, self.seal, lambda event, _: self.events.append(event))
        self.state = applied.state
        return applied

    def report(self, type_: EventType, data: dict[str, Any]) -> Applied:
        return self.apply(reported(self.state, type_, data))

    def run(self, max_rounds: int = 1000) -> ExecutionState:
        runbook, _ = load_runbook_text(self.yaml_text)
        data = {"runbook": runbook.snapshot(), "params": self.params, "facts": self.facts, "waits": "timers"}
        return self.drive(self.apply(requested(self.state, data, "tests")), max_rounds)

    def fire_next_timer(self) -> Applied | None:
        """Fire the earliest pending timer, moving the clock to its time (None: no timer)."""
        pending = self.state.pending_timers()
        if not pending:
            return None
        timer_id, at = min(pending.items(), key=lambda item: (item[1], item[0]))
        self.tick = max(self.tick, (at - T0).total_seconds())
        return self.apply(fired(self.state, timer_id))

    def drive(self, applied: Applied, max_rounds: int = 1000) -> ExecutionState:
        """Run what `applied` scheduled (and what follows) until the end, firing timers when
        nothing else can move; a waiting step with no timer stops the drive (returns)."""
        running: dict[str, RunStep] = {}
        for _ in range(max_rounds):
            started: list[str] = []
            while applied.run or applied.cancel:
                for step_id in applied.cancel:
                    if running.pop(step_id, None) is not None:
                        self.cancelled.append(step_id)
                scheduled, applied = applied.run, Applied(self.state)
                for command in scheduled:
                    running[command.step_id] = command
                    started.append(command.step_id)
                    more = self.report(
                        EventType.STEP_STARTED,
                        {"step_id": command.step_id, "attempt": command.attempt, "phase": command.phase},
                    )
                    applied.run += more.run
                    applied.cancel += more.cancel
            if started:
                self.batches.append(started)
            if self.state.terminal:
                return self.state
            finishable = [r for r in running.values() if self._outcome(r) != "hang"]
            if not finishable and self.state.pending_timers():
                applied = self.fire_next_timer() or Applied(self.state)
                continue
            if not running:
                return self.state  # waiting on something from outside (an event)
            if not finishable:
                # Everything left hangs: the runner would time them out.
                run = next(iter(running.values()))
                running.pop(run.step_id)
                applied = self._fail(run, f"timed out after {run.timeout:g}s", True)
                continue
            applied = Applied(self.state)
            for run in finishable:
                running.pop(run.step_id)
                outcome = self._outcome(run)
                if isinstance(outcome, tuple):
                    more = self._fail(run, "failed", outcome[1])
                else:
                    more = self.report(
                        EventType.STEP_SUCCEEDED,
                        {
                            "step_id": run.step_id,
                            "attempt": run.attempt,
                            "phase": run.phase,
                            "result": outcome,
                            "outputs": outcome if run.phase == "main" else {},
                        },
                    )
                applied.run += more.run
                applied.cancel += more.cancel
        raise AssertionError("coordinator did not finish")

    def _outcome(self, run: RunStep) -> Any:
        key = run.step_id if run.phase == "main" else f"{run.step_id}.{run.phase}"
        outcomes = self.script.get(key, [{}])
        return outcomes[min(run.attempt, len(outcomes)) - 1]

    def _fail(self, run: RunStep, error: str, retryable: bool) -> Applied:
        data: dict[str, Any] = {
            "step_id": run.step_id,
            "attempt": run.attempt,
            "phase": run.phase,
            "error": error,
            "retryable": retryable,
        }
        return self.report(EventType.STEP_FAILED, data)  # the applier adds the retry decision

    def types(self, step_id: str | None = None) -> list[str]:
        return [e.type.value for e in self.events if step_id is None or e.data.get("step_id") == step_id]
