from __future__ import annotations

from datetime import UTC, datetime

from rb_common.settings import Settings
from rb_engine.clock import FakeClock
from rb_engine.steps.base import StepContext
from rb_engine.steps.transform import TransformStep


async def test_returns_a_copy_of_its_inputs() -> None:
    ctx = StepContext(
        execution_id="e",
        step_id="t",
        attempt=1,
        idempotency_key="k",
        settings=Settings(),
        clock=FakeClock(datetime(2024, 1, 1, tzinfo=UTC)),
    )
    inputs = {"count": 3, "names": ["a", "b"], "nested": {"x": None}}
    result = await TransformStep().run(inputs, ctx)
    assert result == {"count": 3, "names": ["a", "b"], "nested": {"x": None}}
    result["count"] = 4
    assert inputs["count"] == 3


def test_accepts_any_inputs() -> None:
    assert TransformStep().validate({"anything": 1, "else": [1, 2]}) == []
