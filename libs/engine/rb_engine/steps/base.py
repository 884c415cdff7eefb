"""The step plugin contract: each type validates its inputs and runs them into a raw result."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx

from rb_common.settings import Settings
from rb_common.step_specs import StepSpec
from rb_engine.child_runs import ChildRuns
from rb_engine.clock import Clock
from rb_engine.visual import BaselineSource


class StepFailed(Exception):
    """A step attempt failed; the message is what operators see in the event and the logs."""

    def __init__(self, message: str, *, retryable: bool = True, detail: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        # Recorded with the failure (`step.failed.detail`): e.g. a screenshot's artifact refs.
        self.detail = detail


@dataclass
class StepContext:
    execution_id: str
    step_id: str
    attempt: int
    idempotency_key: str
    settings: Settings
    clock: Clock
    base_dir: Path = Path(".")
    # Injected so tests and the fixture runner can route HTTP without patching. It replaces the
    # network: requests through it are not checked against the egress policy (rb_engine.egress).
    http_transport: httpx.AsyncBaseTransport | None = None
    # Resolves host names for the egress policy, (host, port) -> addresses; None: the system's.
    # Injected by tests, which map names to addresses without sending a DNS query.
    resolve_host: Callable[[str, int], Awaitable[list[str]]] | None = None
    # Evaluates an expression against the execution's current context (wait.until).
    evaluate: Callable[[str], Any] | None = None
    # Status, headers and other facts about the call, recorded beside the raw result.
    meta: dict[str, Any] = field(default_factory=dict)
    # Files the runbook references (schemas, GraphQL documents), snapshotted with the definition
    # so that a later edit of a file changes neither a running execution nor its replay.
    files: dict[str, str] = field(default_factory=dict)
    # Resolves `${secrets.X}` left in the inputs; called by whoever really runs the step, so a
    # stubbed step never needs the secret and a secret never leaves the step.
    resolve_secrets: Callable[[Any], Any] = lambda inputs: inputs
    # Starts and follows sub-runbooks (`runbook` steps); None where no child can be started.
    children: ChildRuns | None = None
    # How deep the execution is: 0 for a top-level run, n for a sub-runbook n levels down.
    depth: int = 0
    # Who requested the execution (its trigger's actor), if anyone: a sub-runbook's requester.
    requester: str | None = None
    # `rb test`: where ui_screenshot baselines are (rb_engine.visual.BaselineSource).
    baselines: BaselineSource | None = None

    def read_file(self, name: str) -> tuple[Path, str]:
        """(path, text) of a runbook-relative file: the snapshot first, then the disk."""
        path = self.base_dir / name
        if name in self.files:
            return path, self.files[name]
        return path, path.read_text(encoding="utf-8")


class StepPlugin(Protocol):
    spec: StepSpec

    def validate(self, inputs: dict[str, Any]) -> list[str]: ...

    async def run(self, inputs: dict[str, Any], ctx: StepContext) -> Any: ...


class SpecValidated:
    """Mixin: validation is the spec's input check unless a plugin needs more."""

    spec: StepSpec

    def validate(self, inputs: dict[str, Any]) -> list[str]:
        return self.spec.check(inputs)
