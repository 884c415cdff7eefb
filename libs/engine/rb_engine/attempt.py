"""One attempt of one step, as the in-process runner and the NATS workers both run it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Protocol

from rb_common import payloads as ev
from rb_common.canonical import digest
from rb_common.errors import ExpressionError
from rb_common.expressions import mentions_secrets, render
from rb_common.outputs import OutputError, extract_outputs
from rb_common.secrets import mask, string_leaves
from rb_common.step_specs import SPECS
from rb_engine.coordinator import RunStep
from rb_engine.steps.base import StepContext, StepFailed

# step.succeeded or step.failed data, as the worker reports it (before it adds `started_at`).
Outcome = ev.StepSucceeded | ev.StepFailed


class StepExecutor(Protocol):
    async def execute(self, command: RunStep, inputs: Any, ctx: StepContext) -> Any: ...


class Revealed:
    """What one attempt must never show: the secrets it was given and every value an expression
    derived from them (`${upper(secrets.X)}`, `"Bearer ${secrets.X}"`), each masked as a whole
    and in its common encodings (rb_common.secrets)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.values: list[str] = [s for s in secrets if isinstance(s, str)]

    def add(self, value: Any) -> None:
        self.values.extend(string_leaves(value))

    def __iter__(self) -> Iterator[str]:
        return iter(list(self.values))


def resolve_secrets(
    step_type: str,
    inputs: Any,
    context: Callable[[], Mapping[str, Any]],
    revealed: Revealed | None = None,
) -> Any:
    """Second pass over recorded inputs: the expressions that read secrets, resolved only now.
    `context` is called only when some input does read a secret; what each such string renders
    to is added to `revealed` (it is as secret as the secret)."""
    if not isinstance(inputs, dict) or not mentions_secrets(inputs):
        return inputs
    spec = SPECS.get(step_type)
    deferred = spec.deferred if spec else ()
    names = context()

    def resolve(value: Any) -> Any:
        if isinstance(value, str):
            if "${" not in value or not mentions_secrets(value):
                return value
            rendered = render(value, names)
            if revealed is not None:
                revealed.add(rendered)
            return rendered
        if isinstance(value, list):
            return [resolve(v) for v in value]
        if isinstance(value, dict):
            return {k: resolve(v) for k, v in value.items()}
        return value

    return {k: v if k in deferred else resolve(v) for k, v in inputs.items()}


async def run_attempt(
    command: RunStep,
    executor: StepExecutor,
    ctx: StepContext,
    output_specs: dict[str, Any],
    secret_values: Iterable[str],
) -> Outcome:
    """step.succeeded or step.failed for one attempt; secrets masked, timeout enforced.

    `secret_values` is read when the outcome is masked, after the step ran: pass a `Revealed`
    that the context's `resolve_secrets` fills, so derived values are masked too.
    Cancellation propagates: the caller decides how a cancelled attempt is recorded."""
    secrets = secret_values

    def failed(error: str, retryable: bool, **extra: Any) -> Outcome:
        return ev.StepFailed(
            step_id=command.step_id,
            attempt=command.attempt,
            phase=command.phase,
            error=mask(error, secrets),
            retryable=retryable,
            **extra,
        )

    deadline = asyncio.timeout(command.timeout)
    try:
        async with deadline:
            raw = await executor.execute(command, command.inputs, ctx)
        raw = mask(raw, secrets)
        outputs = extract_outputs(output_specs, raw) if command.phase == "main" else {}
    except TimeoutError as exc:
        if deadline.expired():
            return failed(f"timed out after {command.timeout:g}s", True, timed_out=True)
        # The step's own call timed out (a network peer, NATS during a leader election): not the
        # attempt's deadline, and worth another attempt.
        return failed(f"{type(exc).__module__}.{type(exc).__qualname__}: {str(exc) or 'timed out'}", True)
    except StepFailed as exc:
        if exc.detail is not None:
            return failed(exc.message, exc.retryable, detail=mask(exc.detail, secrets))
        return failed(exc.message, exc.retryable)
    except (ExpressionError, OutputError) as exc:
        return failed(str(exc), False)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # a plugin bug must fail the step, not the engine
        return failed(f"{type(exc).__name__}: {exc}", False)
    return ev.StepSucceeded(
        step_id=command.step_id,
        attempt=command.attempt,
        phase=command.phase,
        result=raw,
        outputs=outputs,
        digest=digest(raw),
        meta=mask(ctx.meta, secrets),
    )


def cancelled_outcome(command: RunStep) -> Outcome:
    return ev.StepFailed(
        step_id=command.step_id,
        attempt=command.attempt,
        phase=command.phase,
        error="cancelled",
        cancelled=True,
        retryable=False,
    )
