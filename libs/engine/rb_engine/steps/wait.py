"""`wait`: sleep a duration, or poll an expression until it holds.

Time comes only from `ctx.clock` so `rb test` can run long waits instantly with a FakeClock.
"""

from __future__ import annotations

from typing import Any

from rb_common.durations import parse_duration
from rb_common.errors import ExpressionError
from rb_common.expressions import iter_expressions
from rb_common.step_specs import SPECS
from rb_engine.steps.base import SpecValidated, StepContext, StepFailed

DEFAULT_POLL_INTERVAL = 5.0


def _duration(inputs: dict[str, Any], key: str) -> float | None:
    if inputs.get(key) is None:
        return None
    try:
        return parse_duration(inputs[key])
    except ValueError as exc:
        raise StepFailed(f"input '{key}': {exc}", retryable=False) from None


def expression_body(until: str) -> str:
    """`"${a > 1}"` and `"a > 1"` both mean the expression `a > 1`."""
    text = until.strip()
    try:
        parts = list(iter_expressions(text))
    except ExpressionError as exc:
        raise StepFailed(f"input 'until': {exc}", retryable=False) from None
    if len(parts) == 1 and parts[0][0] == 0 and parts[0][1] == len(text):
        return parts[0][2]
    if parts:
        raise StepFailed(f"input 'until' must be one expression, not a template: {until!r}", retryable=False)
    return text


class WaitStep(SpecValidated):
    spec = SPECS["wait"]

    async def run(self, inputs: dict[str, Any], ctx: StepContext) -> Any:
        seconds = _duration(inputs, "seconds")
        if seconds is not None:
            await ctx.clock.sleep(seconds)
            return {"waited_seconds": seconds}
        if "until" not in inputs:
            raise StepFailed("set 'seconds' or 'until'", retryable=False)
        return await self._poll(inputs, ctx)

    async def _poll(self, inputs: dict[str, Any], ctx: StepContext) -> dict[str, float]:
        until = inputs["until"]
        interval = _duration(inputs, "poll_interval")
        interval = DEFAULT_POLL_INTERVAL if interval is None else interval
        if interval <= 0:
            raise StepFailed("input 'poll_interval' must be more than 0", retryable=False)
        timeout = _duration(inputs, "timeout")
        started = ctx.clock.now()

        def elapsed() -> float:
            return (ctx.clock.now() - started).total_seconds()

        if isinstance(until, bool):
            # Already evaluated before the step ran: it can never change while we wait.
            if until:
                return {"waited_seconds": 0.0}
            raise StepFailed(
                "'until' was already false when the step started and cannot change; "
                "write it as an expression string",
                retryable=False,
            )
        if not isinstance(until, str):
            raise StepFailed("'until' must be an expression string", retryable=False)
        if ctx.evaluate is None:
            raise StepFailed("'until' needs an expression evaluator in the step context", retryable=False)
        body = expression_body(until)
        while True:
            try:
                done = ctx.evaluate(body)
            except ExpressionError as exc:
                raise StepFailed(f"'until' expression failed: {exc}", retryable=False) from None
            if done:
                return {"waited_seconds": elapsed()}
            if timeout is not None:
                remaining = timeout - elapsed()
                if remaining <= 0:
                    raise StepFailed(
                        f"'until' still false after {elapsed():g}s (timeout {timeout:g}s)",
                        retryable=False,
                    )
                await ctx.clock.sleep(min(interval, remaining))
            else:
                await ctx.clock.sleep(interval)
