"""`assert`: a check between steps. The runner has evaluated `that`; a false value fails the
step (not retried: the same facts give the same answer), with `message` as the error."""

from __future__ import annotations

from typing import Any

from rb_common.step_specs import SPECS
from rb_engine.steps.base import SpecValidated, StepContext, StepFailed


class AssertStep(SpecValidated):
    spec = SPECS["assert"]

    async def run(self, inputs: dict[str, Any], ctx: StepContext) -> Any:
        if not inputs["that"]:
            raise StepFailed(inputs.get("message") or "assertion failed", retryable=False)
        return {"passed": True}
