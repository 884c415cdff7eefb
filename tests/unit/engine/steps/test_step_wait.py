from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from rb_common.errors import ExpressionError
from rb_common.settings import Settings
from rb_engine.clock import FakeClock
from rb_engine.steps.base import StepContext, StepFailed
from rb_engine.steps.wait import WaitStep, expression_body

START = datetime(2024, 1, 1, tzinfo=UTC)


def ctx(clock: FakeClock, evaluate: Callable[[str], Any] | None = None) -> StepContext:
    return StepContext(
        execution_id="e",
        step_id="w",
        attempt=1,
        idempotency_key="k",
        settings=Settings(),
        clock=clock,
        evaluate=evaluate,
    )


@pytest.mark.parametrize(
    ("seconds", "expected"), [(2, 2.0), (0.25, 0.25), ("500ms", 0.5), ("5m", 300.0), ("1h", 3600.0)]
)
async def test_seconds_sleeps_on_the_clock(seconds: Any, expected: float) -> None:
    clock = FakeClock(START)
    result = await WaitStep().run({"seconds": seconds}, ctx(clock))
    assert result == {"waited_seconds": expected}
    assert (clock.now() - START).total_seconds() == expected


async def test_bad_duration_fails_without_retry() -> None:
    with pytest.raises(StepFailed) as err:
        await WaitStep().run({"seconds": "soon"}, ctx(FakeClock(START)))
    assert err.value.retryable is False


async def test_until_polls_until_true() -> None:
    clock = FakeClock(START)
    seen: list[str] = []

    def evaluate(body: str) -> Any:
        seen.append(body)
        return (clock.now() - START).total_seconds() >= 12

    result = await WaitStep().run(
        {"until": "${steps.job.outputs.done}", "poll_interval": "5s"}, ctx(clock, evaluate)
    )
    assert result == {"waited_seconds": 15.0}
    assert seen == ["steps.job.outputs.done"] * 4


async def test_until_accepts_raw_expression_and_default_interval() -> None:
    clock = FakeClock(START)
    calls = iter([False, True])
    result = await WaitStep().run({"until": "ready"}, ctx(clock, lambda body: next(calls)))
    assert result == {"waited_seconds": 5.0}


async def test_until_already_true_does_not_sleep() -> None:
    clock = FakeClock(START)
    result = await WaitStep().run({"until": "${x}"}, ctx(clock, lambda body: True))
    assert result == {"waited_seconds": 0.0}
    assert clock.now() == START


async def test_until_times_out_at_the_deadline() -> None:
    clock = FakeClock(START)
    calls: list[float] = []

    def evaluate(body: str) -> bool:
        calls.append((clock.now() - START).total_seconds())
        return False

    with pytest.raises(StepFailed) as err:
        await WaitStep().run({"until": "${x}", "poll_interval": 4, "timeout": "10s"}, ctx(clock, evaluate))
    assert err.value.retryable is False
    assert "timeout 10s" in err.value.message
    # Evaluated at 0, 4, 8 and once more exactly at the deadline, never beyond it.
    assert calls == [0.0, 4.0, 8.0, 10.0]
    assert (clock.now() - START).total_seconds() == 10.0


async def test_expression_error_fails_the_step() -> None:
    def evaluate(body: str) -> Any:
        raise ExpressionError("unknown name 'x'")

    with pytest.raises(StepFailed, match="unknown name"):
        await WaitStep().run({"until": "${x}"}, ctx(FakeClock(START), evaluate))


async def test_until_needs_an_evaluator() -> None:
    with pytest.raises(StepFailed, match="evaluator"):
        await WaitStep().run({"until": "${x}"}, ctx(FakeClock(START)))


async def test_pre_evaluated_boolean_until() -> None:
    assert await WaitStep().run({"until": True}, ctx(FakeClock(START))) == {"waited_seconds": 0.0}
    with pytest.raises(StepFailed, match="already false"):
        await WaitStep().run({"until": False}, ctx(FakeClock(START)))


async def test_zero_poll_interval_rejected() -> None:
    with pytest.raises(StepFailed, match="poll_interval"):
        await WaitStep().run({"until": "x", "poll_interval": 0}, ctx(FakeClock(START), bool))


def test_expression_body() -> None:
    assert expression_body("${a > 1}") == "a > 1"
    assert expression_body("  ${ {'a': 1}['a'] == 1 }  ") == " {'a': 1}['a'] == 1 "
    assert expression_body("a > 1") == "a > 1"
    with pytest.raises(StepFailed, match="one expression"):
        expression_body("x ${a} y")
