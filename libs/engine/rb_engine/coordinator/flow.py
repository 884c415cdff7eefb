"""Steps the coordinator runs itself: `branch`, `wait`, `wait_for_event`, `for_each`. Pure.

None of them holds a worker. A ready one is started by `start` (branch decides at once; the
others are recorded as `step.waiting`), and `progress` moves the waiting ones on: timers
(`StartTimer` → `timer.started` / `timer.fired`) for `wait` and timeouts, a matching
`event.received` for `wait_for_event`, iterations run as sub-steps `<id>[<i>]` for `for_each`.
Their outcomes are `step.succeeded` / `step.failed` with `stage: "coordinator"`: decisions, which
replay checks against `decide()` like any other.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from rb_common.canonical import canonical_json, digest
from rb_common.durations import parse_duration
from rb_common.errors import ExpressionError
from rb_common.expressions import evaluate, render
from rb_common.model import Step
from rb_common.outputs import OutputError, extract_outputs
from rb_common.payloads import StepFailed, StepSucceeded, StepWaiting
from rb_engine.coordinator import state as st
from rb_engine.coordinator.commands import Command, Emit, RunStep, StartTimer
from rb_engine.coordinator.context import expression_context
from rb_engine.coordinator.state import ExecutionState

FLOW_TYPES = frozenset({"branch", "wait", "wait_for_event", "for_each"})
WAITING_TYPES = frozenset({"wait", "wait_for_event"})  # also allowed as a for_each body
MAX_ITEMS = 1000  # for_each's hard cap
DEFAULT_POLL_INTERVAL = 5.0
STAGE = "coordinator"  # the `stage` of an outcome the coordinator decided

_ITERATION = re.compile(r"^(?P<parent>.+)\[(?P<index>\d+)\]$")

Context = Callable[[], dict[str, Any]]
Render = Callable[[str, dict[str, Any], Context], Any]


def runs_itself(state: ExecutionState, step_type: str) -> bool:
    """Whether the coordinator runs a step of this type (a `wait` only in executions recorded
    with `waits: timers`; older recordings ran it on a worker and replay as they ran)."""
    return step_type in FLOW_TYPES and (step_type != "wait" or state.timer_waits)


def iteration_id(parent: str, index: int) -> str:
    return f"{parent}[{index}]"


def parent_of(step_id: str) -> tuple[str, int] | None:
    """`("loop", 3)` for the sub-step `loop[3]`, None for a step of the definition."""
    found = _ITERATION.match(step_id)
    return (found["parent"], int(found["index"])) if found else None


def succeed(state: ExecutionState, step_id: str, attempt: int, result: dict[str, Any]) -> Emit:
    """The step's outputs: its `outputs:` extracted from `result` when it declares them, else the
    whole result (a `wait`'s none, as when workers ran it)."""
    step = state.definition.step(step_id)
    if step.outputs:
        try:
            outputs = extract_outputs(step.outputs, result)
        except OutputError as exc:
            return fail(step_id, attempt, str(exc))
    else:
        outputs = {} if step.type == "wait" else result
    return Emit(
        StepSucceeded(
            step_id=step_id,
            attempt=attempt,
            result=result,
            outputs=outputs,
            digest=digest(result),
            stage=STAGE,
        )
    )


def fail(step_id: str, attempt: int, error: str) -> Emit:
    return Emit(
        StepFailed(
            step_id=step_id, attempt=attempt, error=error, retryable=False, will_retry=False, stage=STAGE
        )
    )


def truth(expression: Any, context: dict[str, Any]) -> bool:
    """A condition: a boolean, a `${...}` template, or a bare expression (`a > 1`)."""
    if isinstance(expression, bool):
        return expression
    if not isinstance(expression, str):
        raise ExpressionError(f"a condition must be an expression string, not {expression!r}")
    if "${" in expression:
        return bool(render(expression, context))
    return bool(evaluate(expression, context))


# -- starting ---------------------------------------------------------------------------------


def start(state: ExecutionState, step: Step, inputs: dict[str, Any], context: Context) -> Command:
    """The first decision for a ready flow step; `inputs` rendered except the deferred ones.
    ExpressionError propagates: decide records it as a failure to render the inputs."""
    attempt = state.steps[step.id].attempt + 1
    if step.type == "branch":
        return _branch(state, step, attempt, context)
    if step.type == "for_each":
        items = inputs.get("items")
        if not isinstance(items, list):
            return fail(step.id, attempt, f"'items' must be a list, got {type(items).__name__}")
        cap = min(MAX_ITEMS, int(inputs.get("max_iterations") or MAX_ITEMS))
        if len(items) > cap:
            return fail(step.id, attempt, f"'items' has {len(items)} items, over the cap of {cap}")
        return Emit(StepWaiting(step_id=step.id, attempt=attempt, inputs=inputs, items=items))
    if step.type == "wait_for_event":
        return Emit(
            StepWaiting(
                step_id=step.id,
                attempt=attempt,
                inputs=inputs,
                subject=str(inputs.get("subject")),
                correlation=inputs.get("correlation"),
            )
        )
    return Emit(StepWaiting(step_id=step.id, attempt=attempt, inputs=inputs))


def branch_cases(inputs: dict[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
    """(cases, else): `cases: [{when, then}]`, or the older `if`/`then`/`else` as one case."""
    cases = inputs.get("cases")
    if cases is None and "if" in inputs:
        cases = [{"when": inputs["if"], "then": inputs.get("then") or []}]
    return list(cases or []), list(inputs.get("else") or [])


def _branch(state: ExecutionState, step: Step, attempt: int, context: Context) -> Command:
    cases, otherwise = branch_cases(step.inputs)
    chosen: int | None = None
    for i, case in enumerate(cases):
        if truth(case.get("when"), context()):
            chosen = i
            break
    taken = list(cases[chosen].get("then") or []) if chosen is not None else otherwise
    every = [sid for case in cases for sid in case.get("then") or []] + otherwise
    skipped = list(dict.fromkeys(sid for sid in every if sid not in taken))
    result = {"case": "else" if chosen is None else chosen, "taken": taken, "skipped": skipped}
    return succeed(state, step.id, attempt, result)


def untaken(state: ExecutionState, step_id: str) -> str | None:
    """Why `step_id` is skipped: a branch it depends on took another side; None otherwise."""
    for dep in state.deps.get(step_id, ()):
        current = state.steps[dep]
        if current.status != st.SUCCEEDED or not isinstance(current.result, dict):
            continue
        if state.definition.step(dep).type == "branch" and step_id in (current.result.get("skipped") or []):
            return f"branch '{dep}' took another side"
    return None


# -- progress of the waiting ones -------------------------------------------------------------


def progress(state: ExecutionState, render_inputs: Render) -> list[Command]:
    """What the waiting flow steps need next (at most one command per step)."""
    commands: list[Command] = []
    for sid in sorted(state.active, key=lambda s: state.position.get(s, 0)):
        current = state.steps[sid]
        if current.status != st.RUNNING or current.scheduled is not None:
            continue  # a worker's attempt (scheduled), not one the coordinator holds
        step = state.definition.step(sid)
        if not runs_itself(state, step.type):
            continue
        command = _advance(state, sid, step, render_inputs)
        if command is not None:
            commands.append(command)
    return commands


def _advance(state: ExecutionState, sid: str, step: Step, render_inputs: Render) -> Command | None:
    current = state.steps[sid]
    inputs = current.inputs if isinstance(current.inputs, dict) else {}
    attempt = current.attempt
    try:
        if step.type == "wait":
            return _wait(state, sid, attempt, inputs)
        if step.type == "wait_for_event":
            return _wait_for_event(state, sid, attempt, inputs)
        if step.type == "for_each":
            return _for_each(state, sid, attempt, inputs, render_inputs)
    except (ValueError, TypeError) as exc:
        return fail(sid, attempt, f"input: {exc}")
    return None


def _elapsed(state: ExecutionState, sid: str) -> float:
    started = state.steps[sid].started_at
    if started is None or state.now is None:
        return 0.0
    return (state.now - started).total_seconds()


def _timer(state: ExecutionState, timer_id: str, seconds: float, purpose: str) -> Command | None:
    """None while the timer waits; a StartTimer if it is not started."""
    if timer_id in state.timers:
        return None
    started = state.now
    assert started is not None
    return StartTimer(timer_id, started + timedelta(seconds=seconds), purpose)


def _fired(state: ExecutionState, timer_id: str) -> bool:
    timer = state.timers.get(timer_id)
    return timer is not None and timer[1]


def _wait(state: ExecutionState, sid: str, attempt: int, inputs: dict[str, Any]) -> Command | None:
    timer_id = f"{sid}@{attempt}"
    if inputs.get("seconds") is not None:
        seconds = parse_duration(inputs["seconds"])
        if _fired(state, timer_id):
            return succeed(state, sid, attempt, {"waited_seconds": seconds})
        return _timer(state, timer_id, seconds, f"step '{sid}' waits {seconds:g}s")
    until = inputs.get("until")
    interval = parse_duration(inputs.get("poll_interval") or DEFAULT_POLL_INTERVAL)
    if interval <= 0:
        return fail(sid, attempt, "input 'poll_interval' must be more than 0")
    # Without its own `timeout`, polling stops at the step's timeout (default 60 s).
    if inputs.get("timeout") is not None:
        timeout = parse_duration(inputs["timeout"])
    else:
        timeout = state.definition.timeout_for(state.definition.step(sid))
    prefix = f"{timer_id}#"
    polls = sum(1 for tid in state.timers if tid.startswith(prefix))
    if polls and not _fired(state, f"{prefix}{polls}"):
        return None  # the next poll is not due yet
    try:
        done = truth(until, expression_context(state))
    except ExpressionError as exc:
        return fail(sid, attempt, f"'until' expression failed: {exc}")
    elapsed = _elapsed(state, sid)
    if done:
        return succeed(state, sid, attempt, {"waited_seconds": elapsed, "polls": polls + 1})
    if elapsed >= timeout:
        return fail(sid, attempt, f"'until' still false after {elapsed:g}s (timeout {timeout:g}s)")
    delay = min(interval, timeout - elapsed)
    return _timer(state, f"{prefix}{polls + 1}", delay, f"step '{sid}' polls 'until'")


def _wait_for_event(state: ExecutionState, sid: str, attempt: int, inputs: dict[str, Any]) -> Command | None:
    current = state.steps[sid]
    if isinstance(current.result, dict) and "received" in current.result:
        return succeed(state, sid, attempt, current.result["received"])
    if inputs.get("timeout") is None:
        return None
    timer_id = f"{sid}@{attempt}"
    if _fired(state, timer_id):
        timeout = parse_duration(inputs["timeout"])
        return fail(
            sid, attempt, f"no event '{inputs.get('subject')}' with this correlation within {timeout:g}s"
        )
    seconds = parse_duration(inputs["timeout"])
    return _timer(state, timer_id, seconds, f"step '{sid}' waits for an event")


def _for_each(
    state: ExecutionState, sid: str, attempt: int, inputs: dict[str, Any], render_inputs: Render
) -> Command | None:
    items = inputs.get("items") or []
    # The iterations follow their loop in the order (flow_fold._waiting put them there).
    at = state.position[sid] + 1
    ids = state.order[at : at + len(items)]
    steps = state.steps
    first_pending = next((i for i, it in enumerate(ids) if steps[it].status == st.PENDING), None)
    prefix = f"{sid}["
    running = sum(1 for a in state.active if a.startswith(prefix))
    if first_pending is None and not running and not any(steps[i].status == st.RETRY_WAIT for i in ids):
        iterations = [steps[i] for i in ids]
        failed = [(i, it) for i, it in enumerate(iterations) if it.status == st.FAILED]
        if failed:
            index, first = failed[0]
            error = f"{len(failed)} of {len(ids)} iterations failed; first: [{index}]: {first.error}"
            return fail(sid, attempt, error)
        results = [it.outputs if it.status == st.SUCCEEDED else None for it in iterations]
        return succeed(state, sid, attempt, {"results": results, "count": len(ids)})
    limit = int(inputs.get("concurrency") or state.concurrency)
    if first_pending is None or running >= limit or state.concurrency - state.active_count() <= 0:
        return None
    if state.status == st.PAUSED:
        return None  # nothing new starts
    index, it = first_pending, steps[ids[first_pending]]
    body = state.definition.step(it.id)
    base = expression_context(state)

    def context() -> dict[str, Any]:
        return {**base, "item": items[index], "index": index}

    try:
        rendered = render_inputs(body.type, body.inputs, context)
    except ExpressionError as exc:
        return fail(it.id, it.attempt + 1, f"inputs: {exc}")
    if body.type in WAITING_TYPES and runs_itself(state, body.type):
        return start(state, body, rendered, context)
    return RunStep(
        step_id=it.id,
        step_type=body.type,
        attempt=it.attempt + 1,
        phase="main",
        inputs=rendered,
        timeout=state.definition.timeout_for(body),
        idempotency_key=f"{state.execution_id}:{it.id}:{it.attempt + 1}",
    )


def waiting_for(state: ExecutionState, subject: str, correlation: Any) -> list[tuple[str, int]]:
    """(step id, attempt) of the `wait_for_event` steps waiting for this subject and correlation
    (compared as canonical JSON, so `42` and `"42"` differ) that have not received one yet."""
    if state.terminal:
        return []
    wanted = canonical_json(correlation)
    found = []
    for sid in sorted(state.active, key=lambda s: state.position.get(s, 0)):
        current = state.steps[sid]
        inputs = current.inputs if isinstance(current.inputs, dict) else {}
        if current.status != st.RUNNING or current.scheduled is not None or current.result is not None:
            continue
        if state.definition.step(sid).type != "wait_for_event" or inputs.get("subject") != subject:
            continue
        if canonical_json(inputs.get("correlation")) == wanted:
            found.append((sid, current.attempt))
    return found
