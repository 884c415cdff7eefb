"""decide(state) -> commands: what should happen next. Pure and idempotent.

Every command, once recorded as an event and folded in, changes the state so that the same
command is not decided again (CancelStep aside, which the runner treats as idempotent).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from rb_common.errors import ExpressionError
from rb_common.expressions import evaluate, mentions_secrets, render
from rb_common.model import Assumption, Step
from rb_common.payloads import (
    AssumptionChecked,
    ExecutionAborted,
    ExecutionCancelled,
    ExecutionFailed,
    ExecutionStarted,
    ExecutionSucceeded,
    RollbackStarted,
    StepFailed,
    StepSkipped,
    StepsSkipped,
    TerminalPayload,
)
from rb_common.step_specs import SPECS
from rb_engine.coordinator import approvals, flow
from rb_engine.coordinator import state as st
from rb_engine.coordinator.commands import CancelStep, Command, Emit, RunStep, StartTimer
from rb_engine.coordinator.context import expression_context, steps_read
from rb_engine.coordinator.kpis import evaluate_kpis
from rb_engine.coordinator.retry import backoff_delay
from rb_engine.coordinator.state import DEADLINE, ExecutionState


def decide(state: ExecutionState, *, first: bool = False) -> list[Command]:
    """What should happen next, in the order it should happen. With `first`, only a prefix of
    that list, at least its first command when there is one (what the applier records before it
    decides again): a wind-down of a large execution then costs O(1) per decision instead of a
    walk over every step, and scheduling stops at the first step it decides."""
    if state.status == st.NEW or state.terminal:
        return []
    if state.status == st.QUEUED:
        if state.held:  # admission queued it: it starts once dequeued, or ends if cancelled
            return [Emit(ExecutionCancelled(reason="cancel requested"))] if state.cancel_requested else []
        rb = state.definition
        return [Emit(ExecutionStarted(runbook_id=rb.id, version=rb.version))]
    timeout = state.definition.timeout
    if timeout is not None and DEADLINE not in state.timers and state.started_at is not None:
        fire_at = (state.retried_at or state.started_at) + timedelta(seconds=timeout)
        return [StartTimer(DEADLINE, fire_at, f"the runbook's timeout of {timeout:g}s")]
    pending_checks = [a for a in state.definition.assumptions if a.name not in state.assumptions]
    if pending_checks:
        context = expression_context(state)
        return [Emit(check_assumption(a, state, context)) for a in pending_checks]
    unmet = [name for name, ok in state.assumptions.items() if not ok]
    if unmet:
        return _wind_down(
            state, ExecutionAborted(reason=f"assumption '{unmet[0]}' not met", unmet=unmet), first
        )
    if state.cancel_requested:
        return _wind_down(state, ExecutionCancelled(reason="cancel requested"), first)
    if state.timed_out:
        timeout = state.definition.timeout or 0.0
        return _wind_down(
            state,
            ExecutionFailed(
                reason=f"timed out: the runbook's timeout of {timeout:g}s passed", timed_out=True
            ),
            first,
        )
    if state.failure is not None:
        failure = state.failure
        reason = f"step '{failure.step_id}' failed: {failure.error}"
        return _wind_down(state, ExecutionFailed(reason=reason, failed_step=failure.step_id), first)
    if resolved := approvals.resolve(state):
        return resolved
    waiting = flow.progress(state, _render_step_inputs)  # running steps finish, also when paused
    if waiting:
        return waiting
    if state.status == st.PAUSED:
        return []
    commands = _schedule(state, first)
    if commands:
        return commands
    if state.all_finished:
        return _finish(state, ExecutionSucceeded())
    return []


def check_assumption(a: Assumption, state: ExecutionState, context: dict[str, Any]) -> AssumptionChecked:
    """An expression expectation is evaluated; a literal one must equal the supplied fact."""
    if isinstance(a.expect, str) and "${" in a.expect:
        try:
            actual = render(a.expect, context)
        except ExpressionError as exc:
            return AssumptionChecked(name=a.name, expected=a.expect, actual=None, ok=False, error=str(exc))
        return AssumptionChecked(name=a.name, expected=a.expect, actual=actual, ok=bool(actual))
    if a.name not in state.facts:
        return AssumptionChecked(
            name=a.name,
            expected=a.expect,
            actual=None,
            ok=False,
            error="no fact supplied for this assumption",
        )
    actual = state.facts[a.name]
    return AssumptionChecked(name=a.name, expected=a.expect, actual=actual, ok=actual == a.expect)


def retry_plan(state: ExecutionState, step_id: str, attempt: int, retryable: bool) -> tuple[bool, float]:
    """(will_retry, delay) after attempt `attempt` of `step_id` failed."""
    step = state.definition.step(step_id)
    policy = state.definition.retry_for(step)
    winding_down = state.failure is not None or state.cancel_requested or state.timed_out
    attempt -= state.steps[step_id].retry_base if step_id in state.steps else 0  # after an operator's retry
    if not retryable or winding_down or attempt >= policy.max_attempts:
        return False, 0.0
    return True, backoff_delay(policy, attempt, f"{state.execution_id}:{step_id}")


def idempotency_key(execution_id: str, step_id: str, attempt: int, phase: str = "main") -> str:
    suffix = "" if phase == "main" else f":{phase}"
    return f"{execution_id}:{step_id}:{attempt}{suffix}"


class _LazyContext:
    """Builds the expression context only if some step actually needs one."""

    def __init__(self, state: ExecutionState) -> None:
        self._state = state
        self._value: dict[str, Any] | None = None

    def __call__(self) -> dict[str, Any]:
        if self._value is None:
            self._value = expression_context(self._state)
        return self._value

    def reading(self, value: Any, *, expression: bool = False) -> Callable[[], dict[str, Any]]:
        """The context for rendering `value`: with only the steps its expressions read when they
        name them (context.steps_read), so a step of a large execution that reads the step
        before it does not build an entry for every step."""
        if self._value is not None:
            return self
        read = steps_read(self._state, value, expression=expression)
        if read is None:
            return self
        narrowed: dict[str, Any] | None = None

        def context() -> dict[str, Any]:
            nonlocal narrowed
            if narrowed is None:
                narrowed = expression_context(self._state, steps=read)
            return narrowed

        return context


def _schedule(state: ExecutionState, first: bool = False) -> list[Command]:
    rb = state.definition
    capacity = state.concurrency - state.active_count()
    context = _LazyContext(state)
    commands: list[Command] = []
    for sid in sorted(state.ready, key=state.position.__getitem__):
        if first and commands:
            return commands
        current = state.steps[sid]
        if current.status == st.RETRY_WAIT:
            if capacity > 0:
                step = rb.step(sid)
                commands.append(
                    _run(state, step, current.attempt + 1, current.inputs, not_before=current.retry_at)
                )
                capacity -= 1
            continue
        if current.status != st.PENDING:
            continue
        deps = [state.steps[d] for d in state.deps[sid]]
        if any(d.status not in st.FINISHED for d in deps):
            continue
        skipped = next((d.id for d in deps if d.status == st.SKIPPED), None)
        if skipped:
            commands.append(_skip(sid, f"upstream step '{skipped}' was skipped"))
            continue
        untaken = flow.untaken(state, sid)
        if untaken:
            commands.append(_skip(sid, untaken))
            continue
        step = rb.step(sid)
        attempt = current.attempt + 1  # 1, or the next after an operator's retry
        try:
            if step.when is not None and not _condition(
                step.when, context.reading(step.when, expression=True)
            ):
                commands.append(_skip(sid, "condition 'when' is false"))
                continue
            if capacity <= 0:
                continue
            if flow.runs_itself(state, step.type):
                inputs = _render_step_inputs(step.type, step.inputs, context)
                commands.append(flow.start(state, step, inputs, context))
                capacity -= 1
                continue
            inputs = _render_step_inputs(step.type, step.inputs, context.reading(step.inputs))
        except ExpressionError as exc:
            commands.append(
                Emit(
                    StepFailed(step_id=sid, attempt=attempt, error=str(exc), will_retry=False, stage="inputs")
                )
            )
            continue
        commands.append(
            approvals.request(state, step, inputs)
            if step.type == "approval"
            else _run(state, step, attempt, inputs)
        )
        capacity -= 1
    return commands


def _condition(when: str | bool, context: Callable[[], dict[str, Any]]) -> bool:
    if isinstance(when, bool):
        return when
    if "${" in when:
        return bool(render(when, context()))
    return bool(evaluate(when, context()))


def _render_step_inputs(step_type: str, inputs: dict[str, Any], context: Callable[[], dict[str, Any]]) -> Any:
    spec = SPECS.get(step_type)
    deferred = spec.deferred if spec else ()
    return {k: v if k in deferred else _render_inputs(v, context) for k, v in inputs.items()}


def _render_inputs(inputs: Any, context: Callable[[], dict[str, Any]]) -> Any:
    """Inputs with expressions resolved, except those that read secrets: those stay as written
    and are resolved inside the step at run time, so no secret value is ever recorded."""
    if isinstance(inputs, dict):
        return {k: _render_inputs(v, context) for k, v in inputs.items()}
    if isinstance(inputs, list):
        return [_render_inputs(v, context) for v in inputs]
    if isinstance(inputs, str) and "${" in inputs:
        if mentions_secrets(inputs):
            return inputs
        rendered = render(inputs, context())
        if _smuggles_secrets(rendered):
            # Data (a parameter, an alert label, an output) that holds `${secrets.X}` would be
            # resolved by the worker's second pass and send the secret wherever the step goes.
            raise ExpressionError(
                f"in {inputs!r}: the value holds an expression that reads secrets; data may not"
            )
        return rendered
    return inputs


def _smuggles_secrets(value: Any) -> bool:
    try:
        return mentions_secrets(value)
    except ExpressionError:
        return False  # not an expression the worker could evaluate either


def _run(state: ExecutionState, step: Step, attempt: int, inputs: Any, *, not_before: Any = None) -> RunStep:
    return RunStep(
        step_id=step.id,
        step_type=step.type,
        attempt=attempt,
        phase="main",
        inputs=inputs,
        timeout=state.definition.timeout_for(step),
        idempotency_key=idempotency_key(state.execution_id, step.id, attempt),
        not_before=not_before,
    )


def _skip(step_id: str, reason: str) -> Emit:
    return Emit(StepSkipped(step_id=step_id, reason=reason))


def _wind_down(state: ExecutionState, terminal: TerminalPayload, first: bool = False) -> list[Command]:
    """Skip what has not started, cancel what runs, compensate if asked, then finish.

    The steps before `state.frontier` are all finished, so the walk starts there; every step
    after it that is not finished gets a command, so with `first` the walk ends at once."""
    commands: list[Command] = []
    rollback = state.failure is not None and state.failure.mode == "rollback"
    if rollback and not state.rollback_started:
        assert state.failure is not None
        commands.append(
            Emit(RollbackStarted(failed_step=state.failure.step_id, compensate=_compensation_order(state)))
        )
        if first:
            return commands
    active = False
    order, steps = state.order, state.steps
    if state.skip_together:
        pending = [
            order[at] for at in range(state.frontier, len(order)) if steps[order[at]].status in _PENDING
        ]
        if pending:
            skipped = StepsSkipped(step_ids=pending, reason=f"execution is ending ({terminal.reason})")
            commands.append(Emit(skipped))
            if first:
                return commands
    for at in range(state.frontier, len(order)):
        sid = order[at]
        current = steps[sid]
        if current.status in _PENDING:
            if state.skip_together:
                continue  # in the one steps.skipped above
            commands.append(_skip(sid, f"execution is ending ({terminal.reason})"))
        elif current.status in st.ACTIVE:
            commands.append(CancelStep(sid))
            active = True
        else:
            continue
        if first:
            return commands
    if active or any(
        isinstance(c, Emit) and isinstance(c.payload, StepSkipped | StepsSkipped) for c in commands
    ):
        return commands
    if rollback:
        compensation = _next_compensation(state)
        if compensation is not None:
            return [*commands, *compensation]
        terminal = terminal.model_copy(update=_rollback_summary(state))
    return [*commands, *_finish(state, terminal)]


_PENDING = (st.PENDING, st.RETRY_WAIT)  # what a wind-down skips


def _compensation_order(state: ExecutionState) -> list[str]:
    rb = state.definition
    return [
        sid
        for sid in reversed(state.order)
        if state.steps[sid].status == st.SUCCEEDED and rb.step(sid).rollback is not None
    ]


def _next_compensation(state: ExecutionState) -> list[Command] | None:
    """The next compensation to run, [] while one runs, None when all are done."""
    rb = state.definition
    for sid in _compensation_order(state):
        current = state.steps[sid]
        if current.rollback_status in st.ACTIVE:
            return []
        if current.rollback_status is None:
            spec = rb.step(sid).rollback
            assert spec is not None
            context = _LazyContext(state)
            try:
                inputs = _render_step_inputs(spec.type, spec.inputs, context)
            except ExpressionError as exc:
                return [
                    Emit(
                        StepFailed(
                            step_id=sid,
                            attempt=1,
                            phase="rollback",
                            error=str(exc),
                            will_retry=False,
                            stage="inputs",
                        )
                    )
                ]
            return [
                RunStep(
                    step_id=sid,
                    step_type=spec.type,
                    attempt=1,
                    phase="rollback",
                    inputs=inputs,
                    timeout=spec.timeout or rb.defaults.timeout,
                    idempotency_key=idempotency_key(state.execution_id, sid, 1, "rollback"),
                )
            ]
    return None


def _rollback_summary(state: ExecutionState) -> dict[str, list[str]]:
    done = [sid for sid in _compensation_order(state)]
    return {
        "rolled_back": [sid for sid in done if state.steps[sid].rollback_status == st.SUCCEEDED],
        "rollback_failed": [sid for sid in done if state.steps[sid].rollback_status == st.FAILED],
    }


def _finish(state: ExecutionState, terminal: TerminalPayload) -> list[Command]:
    commands: list[Command] = []
    if state.kpis is None:
        commands.append(Emit(evaluate_kpis(state)))
    commands.append(Emit(terminal))
    return commands
