"""run_attempt: the attempt's own deadline is a timeout; a TimeoutError the step's own call raised
before it (a network peer, NATS electing a leader) is a retryable failure that says what it was.

The 30-minute chaos run failed two sub-runbook steps as "timed out after 60s" ten seconds in:
NATS timed out creating the consumer that follows the child."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from nats.errors import TimeoutError as NatsTimeout

from rb_common import payloads as ev
from rb_common.settings import Settings
from rb_engine.attempt import run_attempt
from rb_engine.clock import FakeClock
from rb_engine.coordinator.commands import RunStep
from rb_engine.steps.base import StepContext


class Step:
    def __init__(self, action: Any) -> None:
        self.action = action

    async def execute(self, command: RunStep, inputs: Any, ctx: StepContext) -> Any:
        return await self.action()


def command(timeout: float) -> RunStep:
    return RunStep(
        step_id="s",
        step_type="fake",
        attempt=1,
        phase="main",
        inputs={},
        timeout=timeout,
        idempotency_key="e:s:1",
    )


def context() -> StepContext:
    return StepContext(
        execution_id="e",
        step_id="s",
        attempt=1,
        idempotency_key="e:s:1",
        settings=Settings(),
        clock=FakeClock(datetime(2026, 1, 1, tzinfo=UTC)),
    )


async def attempt(action: Any, timeout: float) -> ev.StepSucceeded | ev.StepFailed:
    return await run_attempt(command(timeout), Step(action), context(), {}, [])


async def test_past_its_deadline_the_attempt_timed_out() -> None:
    outcome = await attempt(lambda: asyncio.sleep(5), timeout=0.05)
    assert isinstance(outcome, ev.StepFailed)
    assert outcome.error == "timed out after 0.05s" and outcome.timed_out and outcome.retryable


async def test_a_timeout_raised_by_the_step_itself_is_not_the_attempts() -> None:
    async def nats_times_out() -> None:
        raise NatsTimeout

    outcome = await attempt(nats_times_out, timeout=60)
    assert isinstance(outcome, ev.StepFailed)
    assert not outcome.timed_out and outcome.retryable
    assert "timed out after" not in outcome.error and "nats.errors.TimeoutError" in outcome.error


async def test_in_time_it_succeeds() -> None:
    async def quick() -> dict[str, int]:
        return {"x": 1}

    outcome = await attempt(quick, timeout=1)
    assert isinstance(outcome, ev.StepSucceeded) and outcome.result == {"x": 1}
