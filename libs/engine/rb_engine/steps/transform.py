"""`transform`: the runner has already evaluated the inputs, so they are the result."""

from __future__ import annotations

from typing import Any

from rb_common.step_specs import SPECS
from rb_engine.steps.base import SpecValidated, StepContext


class TransformStep(SpecValidated):
    spec = SPECS["transform"]

    async def run(self, inputs: dict[str, Any], ctx: StepContext) -> Any:
        # A copy, so later mutation of the result cannot reach back into the runner's inputs.
        return dict(inputs)
