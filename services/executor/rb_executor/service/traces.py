"""The coordinator's execution spans (rb_common.tracing): one span per execution, from its
trigger message (the child of the trigger's span, whose context the message's headers carry) to
its terminal event. While the coordinator advances an execution, its span is the current one,
so the events it appends and the tasks it publishes carry it in their headers, and each step
attempt's span (a worker) is its child.

Held in this process only. An execution whose trigger another replica (or an earlier process)
took has no span here: its tasks are then published in the context that the last outcome
message from a worker carried (the worker passes on its task's context), so its step attempts
stay in the execution's trace; such an execution's span ends with the process that opened it.
Nothing is done unless tracing is on.
"""

from __future__ import annotations

from collections import OrderedDict
from contextlib import AbstractContextManager
from typing import Any

from nats.aio.msg import Msg

from rb_common import tracing
from rb_common.statuses import ExecutionStatus
from rb_engine.coordinator import ExecutionState

HELD = 10_000  # open spans (and remembered contexts) kept; the oldest are ended beyond it


class ExecutionSpans:
    def __init__(self, held: int = HELD) -> None:
        self.open: OrderedDict[str, Any] = OrderedDict()
        self.carriers: OrderedDict[str, dict[str, str]] = OrderedDict()
        self.held = held

    def begin(self, execution_id: str, trigger: Msg, runbook_id: str) -> None:
        """The execution's span, once, as the child of the trigger message's context."""
        if not tracing.enabled() or execution_id in self.open:
            return
        self.open[execution_id] = tracing.start(
            "rb.execution",
            parent=trigger.headers,
            kind="consumer",
            attributes={"rb.execution_id": execution_id, "rb.runbook_id": runbook_id},
        )
        while len(self.open) > self.held:
            _, handle = self.open.popitem(last=False)
            tracing.end(handle, attributes={"rb.unfinished": True})

    def remember(self, execution_id: str, outcome: Msg) -> None:
        """The execution's context from a message about it (an outcome), for executions whose
        span is not held here."""
        if not tracing.enabled() or execution_id in self.open:
            return
        carrier = tracing.carried(outcome.headers)
        if carrier:
            self.carriers[execution_id] = carrier
            while len(self.carriers) > self.held:
                self.carriers.popitem(last=False)

    def within(self, execution_id: str) -> AbstractContextManager[None]:
        """The execution's span (or remembered context) current inside the block."""
        return tracing.within(self.open.get(execution_id), carrier=self.carriers.get(execution_id))

    def finish(self, state: ExecutionState) -> None:
        """End the span of an execution that has reached its terminal status."""
        if not tracing.enabled() or not state.terminal:
            return
        self.carriers.pop(state.execution_id, None)
        handle = self.open.pop(state.execution_id, None)
        if handle is None:
            return
        status = str(state.status)
        failed = state.status != ExecutionStatus.SUCCEEDED
        tracing.end(handle, error=status if failed else None, attributes={"rb.status": status})

    def close(self) -> None:
        """The process stops: what is open ends here, marked unfinished."""
        while self.open:
            _, handle = self.open.popitem(last=False)
            tracing.end(handle, attributes={"rb.unfinished": True})
        self.carriers.clear()
