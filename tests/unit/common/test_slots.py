"""The slot table's rules (rb_common.slots): global and per-runbook limits, arrival order,
reject, cancel_oldest, the queue's bound, and releases that start the next in order."""

from __future__ import annotations

from rb_common.slots import Slot, Table, admit, release


def slot(eid: str, runbook: str = "r", limit: int | None = None, *, child: bool = False) -> Slot:
    return Slot(eid, runbook, limit, 0.0, child=child)


def ids(slots: list[Slot]) -> list[str]:
    return [s.execution_id for s in slots]


def test_limit_2_with_5_starts_2_and_queues_3_which_start_in_order() -> None:
    table = Table()
    verdicts = [
        admit(table, slot(f"e{i}", limit=2), "queue", max_running=100, max_queued=10) for i in range(5)
    ]
    assert [v.outcome for v in verdicts] == ["start", "start", "queue", "queue", "queue"]
    assert verdicts[2].limit == "runbook"
    assert ids(table.running) == ["e0", "e1"]
    assert ids(table.queue) == ["e2", "e3", "e4"]
    assert release(table, "e1", 100) == ["e2"]
    assert release(table, "e0", 100) == ["e3"]
    assert release(table, "e2", 100) == ["e4"]
    assert ids(table.running) == ["e3", "e4"] and table.queue == []


def test_global_limit_queues_across_runbooks_in_arrival_order() -> None:
    table = Table()
    for i, runbook in enumerate(["a", "b", "a", "c", "b"]):
        admit(table, slot(f"e{i}", runbook), "queue", max_running=2, max_queued=10)
    assert ids(table.running) == ["e0", "e1"]
    assert ids(table.queue) == ["e2", "e3", "e4"]
    assert release(table, "e0", 2) == ["e2"]
    assert release(table, "e1", 2) == ["e3"]


def test_a_runbook_at_its_limit_lets_later_starts_of_other_runbooks_pass() -> None:
    table = Table()
    admit(table, slot("a1", "a", 1), "queue", max_running=2, max_queued=10)
    admit(table, slot("b1", "b"), "queue", max_running=2, max_queued=10)
    admit(table, slot("a2", "a", 1), "queue", max_running=2, max_queued=10)  # held by a's limit
    admit(table, slot("c1", "c"), "queue", max_running=2, max_queued=10)  # held globally
    assert release(table, "b1", 2) == ["c1"]  # a2 is still over a's limit
    assert release(table, "a1", 2) == ["a2"]


def test_reject_refuses_over_the_runbook_limit_only() -> None:
    table = Table()
    assert admit(table, slot("e0", limit=1), "reject", max_running=1, max_queued=10).outcome == "start"
    verdict = admit(table, slot("e1", limit=1), "reject", max_running=1, max_queued=10)
    assert verdict.outcome == "refuse" and "concurrency.limit of 1" in verdict.reason
    # Over the global limit but not its runbook's: it waits.
    assert admit(table, slot("x", "other", 1), "reject", max_running=1, max_queued=10).outcome == "queue"
    assert ids(table.queue) == ["x"]


def test_cancel_oldest_marks_the_oldest_running_once_each() -> None:
    table = Table()
    for i in range(2):
        admit(table, slot(f"e{i}", limit=2), "cancel_oldest", max_running=10, max_queued=10)
    third = admit(table, slot("e2", limit=2), "cancel_oldest", max_running=10, max_queued=10)
    fourth = admit(table, slot("e3", limit=2), "cancel_oldest", max_running=10, max_queued=10)
    fifth = admit(table, slot("e4", limit=2), "cancel_oldest", max_running=10, max_queued=10)
    assert (third.outcome, third.cancel) == ("queue", "e0")
    assert fourth.cancel == "e1"
    assert fifth.cancel is None  # both running ones are being cancelled already
    assert release(table, "e0", 10) == ["e2"]


def test_past_the_bound_a_start_is_refused_and_nothing_changes() -> None:
    table = Table()
    admit(table, slot("e0"), "queue", max_running=1, max_queued=1)
    assert admit(table, slot("e1"), "queue", max_running=1, max_queued=1).outcome == "queue"
    before = table.encode()
    verdict = admit(table, slot("e2"), "queue", max_running=1, max_queued=1)
    assert verdict.outcome == "refuse" and "queue is full" in verdict.reason
    assert table.encode() == before


def test_a_repeated_start_keeps_its_place() -> None:
    table = Table()
    admit(table, slot("e0"), "queue", max_running=1, max_queued=5)
    admit(table, slot("e1"), "queue", max_running=1, max_queued=5)
    assert admit(table, slot("e0"), "queue", max_running=1, max_queued=5).outcome == "start"
    assert admit(table, slot("e1"), "queue", max_running=1, max_queued=5).outcome == "queue"
    assert ids(table.running) == ["e0"] and ids(table.queue) == ["e1"]


def test_children_are_not_held_by_the_global_limit() -> None:
    table = Table()
    admit(table, slot("parent"), "queue", max_running=1, max_queued=5)
    assert (
        admit(table, slot("child", "sub", child=True), "queue", max_running=1, max_queued=5).outcome
        == "start"
    )
    assert admit(table, slot("other"), "queue", max_running=1, max_queued=5).outcome == "queue"


def test_the_table_survives_its_encoding() -> None:
    table = Table()
    admit(table, slot("e0", limit=1), "cancel_oldest", max_running=1, max_queued=5)
    admit(table, slot("e1", limit=1), "cancel_oldest", max_running=1, max_queued=5)
    again = Table.decode(table.encode())
    assert again == table and again.running[0].cancelling
    assert Table.decode(None) == Table()
