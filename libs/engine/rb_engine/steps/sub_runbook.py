"""`runbook`: run another registered runbook as a child execution and take on its outcome.

The step succeeds with the child's step outputs when the child succeeds, and fails when it
fails, aborts or is cancelled. How the child runs is the driver's (the context's `children`
port, rb_engine.child_runs); the depth cap is checked here, before anything starts.
"""

from __future__ import annotations

from typing import Any

from rb_common.step_specs import SPECS, StepSpec
from rb_engine.child_runs import (
    ChildError,
    ChildRequest,
    child_execution_id,
    depth_problem,
    failure_message,
    raw_result,
)
from rb_engine.steps.base import SpecValidated, StepContext, StepFailed


def child_request(inputs: dict[str, Any], ctx: StepContext, actor: str) -> ChildRequest:
    """The child this attempt stands for; StepFailed when it would be too deep."""
    problem = depth_problem(ctx.depth, inputs.get("max_depth"))
    if problem is not None:
        raise StepFailed(problem, retryable=False)
    params = inputs.get("params") or {}
    if not isinstance(params, dict):
        raise StepFailed("input 'params' must be an object", retryable=False)
    return ChildRequest(
        runbook_id=str(inputs["runbook"]),
        params=params,
        execution_id=child_execution_id(ctx.idempotency_key),
        parent_execution_id=ctx.execution_id,
        parent_step_id=ctx.step_id,
        depth=ctx.depth + 1,
        actor=actor,
    )


class RunbookStep(SpecValidated):
    spec: StepSpec = SPECS["runbook"]

    async def run(self, inputs: dict[str, Any], ctx: StepContext) -> Any:
        request = child_request(inputs, ctx, actor=ctx.requester or f"runbook:{ctx.execution_id}")
        if ctx.children is None:
            raise StepFailed("sub-runbooks cannot be started here (no child runner)", retryable=False)
        ctx.meta["child_execution_id"] = request.execution_id
        try:
            outcome = await ctx.children.run(request)
        except ChildError as exc:
            raise StepFailed(
                f"sub-runbook {request.runbook_id} not started: {exc}", retryable=False
            ) from None
        if not outcome.succeeded:
            raise StepFailed(failure_message(request.runbook_id, outcome), retryable=False)
        return raw_result(request.runbook_id, outcome)
