"""`rb run`'s progress lines for a wind-down's `steps.skipped` (rb_cli.output.Progress)."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.console import Console

from rb_cli.output import Progress
from rb_common.events import Event, EventType
from rb_engine.coordinator import ExecutionState


def line_for(step_ids: list[str]) -> str:
    console = Console(record=True, width=200, color_system=None)
    event = Event.sealed(
        prev_hash=None,
        id="e1",
        execution_id="ex1",
        seq=1,
        type=EventType.STEPS_SKIPPED,
        time=datetime(2026, 1, 1, tzinfo=UTC),
        actor="rb-executor",
        data={"step_ids": step_ids, "reason": "execution is ending (cancel requested)"},
    )
    Progress(console)(event, ExecutionState())
    return console.export_text().strip()


def test_a_few_skipped_steps_are_named() -> None:
    assert line_for(["b", "c"]).endswith("2 skipped (b, c): execution is ending (cancel requested)")


def test_thousands_of_skipped_steps_make_one_line() -> None:
    text = line_for([f"s{i}" for i in range(5_000)])
    assert text.count("\n") == 0
    assert "5000 skipped (s0, s1, s2, s3, s4 and 4995 more): execution is ending (cancel requested)" in text
