"""Sub-runbooks in process (`rb run`): each child runs with its own Runner, beside its parent.

The child's runbook is found by id in local directories (the parent's siblings, then
RB_RUNBOOKS_DIR): `<dir>/<id>/runbook.yaml`, `<dir>/<id>.yaml`, or any runbook file under the
directory that declares that id. Its events go to the same event store as the parent's, under
the child's own execution id. A child started again with the same id (it cannot be, in one
process, but the port allows it) is run once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable
from pathlib import Path

from rb_common.errors import RbError
from rb_common.loader import load_runbook
from rb_common.model import Runbook
from rb_common.params import resolve_params
from rb_engine.child_runs import ChildError, ChildOutcome, ChildRequest
from rb_engine.coordinator import ExecutionState
from rb_engine.runner import Runner, RunRequest

RUNBOOK_FILE = "runbook.yaml"
CANCEL_GRACE = 10.0  # seconds a cancelled child may take to wind down


def find_runbook(runbook_id: str, directories: Iterable[Path]) -> tuple[Runbook, Path] | None:
    """(runbook, its directory) of the first local runbook with this id."""
    for directory in directories:
        if not directory.is_dir():
            continue
        candidates = [
            directory / runbook_id / RUNBOOK_FILE,
            directory / f"{runbook_id}.yaml",
            directory / f"{runbook_id}.yml",
        ]
        for path in [*candidates, *sorted(directory.glob(f"*/{RUNBOOK_FILE}"))]:
            if not path.is_file():
                continue
            try:
                runbook = load_runbook(path)
            except RbError:
                continue
            if runbook.id == runbook_id:
                return runbook, path.parent
    return None


def outcome_of(state: ExecutionState) -> ChildOutcome:
    outputs = {sid: dict(step.outputs) for sid, step in state.steps.items() if step.outputs}
    return ChildOutcome(
        execution_id=state.execution_id, status=str(state.status), reason=state.reason, outputs=outputs
    )


class LocalChildren:
    """The `ChildRuns` of the in-process runner. `make_runner(base_dir)` builds the child's
    Runner (sharing the parent's store, executor, clock and settings, with this same port, so a
    child's children run too)."""

    def __init__(self, directories: list[Path], make_runner: Callable[[Path], Runner]) -> None:
        self.directories = directories
        self.make_runner = make_runner
        self._runs: dict[str, tuple[Runner, asyncio.Future[ExecutionState]]] = {}

    async def run(self, request: ChildRequest) -> ChildOutcome:
        found = find_runbook(request.runbook_id, self.directories)
        if found is None:
            shown = ", ".join(str(d) for d in self.directories)
            raise ChildError(f"no runbook {request.runbook_id!r} under {shown}")
        runbook, base_dir = found
        try:
            params = resolve_params(runbook, request.params)
        except RbError as exc:
            raise ChildError(str(exc)) from None
        if request.execution_id in self._runs:
            runner, task = self._runs[request.execution_id]
        else:
            runner = self.make_runner(base_dir)
            run = RunRequest(
                runbook=runbook,
                params=params,
                trigger=request.trigger(),
                actor=request.actor,
                execution_id=request.execution_id,
                base_dir=base_dir,
                parent=request.parent,
                depth=request.depth,
            )
            task = asyncio.ensure_future(runner.run(run))
            self._runs[request.execution_id] = (runner, task)
        try:
            state = await asyncio.shield(task)
        except asyncio.CancelledError:
            runner.cancel(request.actor, f"its parent step {request.parent_step_id} was cancelled")
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(task), CANCEL_GRACE)
            raise
        return outcome_of(state)
