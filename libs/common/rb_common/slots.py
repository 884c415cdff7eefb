"""The slot table: which executions run and which wait, shared by every executor (pure).

One JSON value in the `<NS>_ADMISSION` KV bucket (rb_common.slots_bucket), changed only by
compare-and-set, so two executors never both take the last slot. `running` is in start order
(oldest first), `queue` in arrival order. Rules (`admit`, `release`, `fill`):

- a start goes to the end of the queue and the queue is filled: in arrival order, an entry
  starts when fewer than `max_running` executions run (children of a `runbook` step are not
  held by this global limit, or a parent would wait forever on its own child) and fewer than
  its runbook's `concurrency.limit`; an entry blocked by its runbook's limit lets later entries
  of other runbooks pass;
- over its runbook's limit, `on_limit: reject` refuses the start; `cancel_oldest` marks the
  oldest running execution of the runbook not yet marked, for the caller to cancel, and waits
  for a slot; `queue` waits;
- a start that would wait while `max_queued` others wait already is refused (the API answers
  429 before that point: `depth`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

Outcome = Literal["start", "queue", "refuse"]


@dataclass
class Slot:
    execution_id: str
    runbook_id: str
    limit: int | None = None  # the runbook's concurrency.limit
    at: float = 0.0  # when it was admitted (unix seconds)
    child: bool = False  # a `runbook` step's child: not held by the global limit
    cancelling: bool = False  # chosen by cancel_oldest

    def dump(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.execution_id, "runbook": self.runbook_id, "at": self.at}
        if self.limit is not None:
            out["limit"] = self.limit
        if self.child:
            out["child"] = True
        if self.cancelling:
            out["cancelling"] = True
        return out

    @classmethod
    def load(cls, data: dict[str, Any]) -> Slot:
        return cls(
            data["id"],
            data["runbook"],
            data.get("limit"),
            float(data.get("at", 0.0)),
            bool(data.get("child", False)),
            bool(data.get("cancelling", False)),
        )


@dataclass
class Table:
    running: list[Slot] = field(default_factory=list)
    queue: list[Slot] = field(default_factory=list)

    def encode(self) -> bytes:
        return orjson.dumps(
            {"running": [s.dump() for s in self.running], "queue": [s.dump() for s in self.queue]}
        )

    @classmethod
    def decode(cls, raw: bytes | None) -> Table:
        if not raw:
            return cls()
        data = orjson.loads(raw)
        return cls(
            [Slot.load(s) for s in data.get("running", [])], [Slot.load(s) for s in data.get("queue", [])]
        )

    def find(self, execution_id: str) -> Literal["running", "queued"] | None:
        if any(s.execution_id == execution_id for s in self.running):
            return "running"
        if any(s.execution_id == execution_id for s in self.queue):
            return "queued"
        return None

    def count(self, runbook_id: str) -> int:
        return sum(1 for s in self.running if s.runbook_id == runbook_id)

    @property
    def global_count(self) -> int:
        return sum(1 for s in self.running if not s.child)


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    reason: str = ""
    limit: str | None = None  # what holds it: "global" | "runbook"
    cancel: str | None = None  # cancel_oldest: the execution to cancel


def fill(table: Table, max_running: int) -> list[str]:
    """Start queued entries that fit, in arrival order; their ids."""
    started: list[str] = []
    waiting: list[Slot] = []
    for slot in table.queue:
        global_room = slot.child or table.global_count < max_running
        runbook_room = slot.limit is None or table.count(slot.runbook_id) < slot.limit
        if global_room and runbook_room:
            table.running.append(slot)
            started.append(slot.execution_id)
        else:
            waiting.append(slot)
    table.queue = waiting
    return started


def admit(
    table: Table,
    slot: Slot,
    on_limit: str,
    *,
    max_running: int,
    max_queued: int,
) -> Verdict:
    """Judge a start (changing `table`); a start already in the table keeps its place."""
    where = table.find(slot.execution_id)
    if where == "running":
        return Verdict("start")
    if where == "queued":
        return Verdict("queue", "waiting for a slot")
    runbook_full = slot.limit is not None and table.count(slot.runbook_id) >= slot.limit
    if runbook_full and on_limit == "reject":
        return Verdict(
            "refuse",
            f"{slot.runbook_id} has {table.count(slot.runbook_id)} running executions, its "
            f"concurrency.limit of {slot.limit} (on_limit: reject)",
            "runbook",
        )
    cancel = None
    if runbook_full and on_limit == "cancel_oldest":
        oldest = next(
            (s for s in table.running if s.runbook_id == slot.runbook_id and not s.cancelling), None
        )
        if oldest is not None:
            oldest.cancelling = True
            cancel = oldest.execution_id
    table.queue.append(slot)
    if slot.execution_id in fill(table, max_running):
        return Verdict("start")
    if len(table.queue) > max_queued:
        table.queue.pop()
        if cancel is not None:
            next(s for s in table.running if s.execution_id == cancel).cancelling = False
        return Verdict(
            "refuse", f"the execution queue is full ({max_queued} executions wait for a slot)", "global"
        )
    if runbook_full:
        return Verdict(
            "queue",
            f"{slot.runbook_id} has {table.count(slot.runbook_id)} running executions, its "
            f"concurrency.limit of {slot.limit}",
            "runbook",
            cancel,
        )
    return Verdict("queue", f"{max_running} executions run, RB_MAX_RUNNING_EXECUTIONS", "global")


def release(table: Table, execution_id: str, max_running: int) -> list[str]:
    """An execution ended (or was dropped): free its slot or place; the ids that start now."""
    table.running = [s for s in table.running if s.execution_id != execution_id]
    table.queue = [s for s in table.queue if s.execution_id != execution_id]
    return fill(table, max_running)
