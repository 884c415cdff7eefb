"""RegistryView: the registry by sequence, so alerts are matched as of their arrival."""

from __future__ import annotations

import asyncio
from pathlib import Path

from rb_common.loader import load_runbook_text
from rb_scheduler.registry_feed import RegistryView
from rb_store.registry import Registered


def entry(runbook_id: str, revision: int = 1) -> Registered:
    runbook, _ = load_runbook_text(
        f"id: {runbook_id}\nname: x\nsteps:\n  - {{id: a, type: transform, inputs: {{}}}}\n"
    )
    return Registered(runbook, revision)


def ids(entries: list[Registered]) -> list[tuple[str, int]]:
    return [(e.runbook.id, e.revision) for e in entries]


def test_as_of_sees_the_registry_at_each_sequence() -> None:
    view = RegistryView()
    view.load([entry("a")], 10)
    view.apply("b", entry("b"), 11)  # approved
    view.apply("a", None, 12)  # deprecated
    view.apply("b", entry("b", 2), 14)  # revised and approved again
    assert ids(view.as_of(10)) == [("a", 1)]
    assert ids(view.as_of(11)) == [("a", 1), ("b", 1)]
    assert ids(view.as_of(13)) == [("b", 1)]
    assert ids(view.as_of(99)) == [("b", 2)]
    assert ids(view.as_of(None)) == ids(view.current()) == [("b", 2)]
    # Older than anything kept: the oldest state known (a restarted router's start-up load).
    assert ids(view.as_of(3)) == [("a", 1)]
    assert view.applied == 14


def test_a_runbook_that_left_the_registry_before_a_reload_is_dropped() -> None:
    view = RegistryView()
    view.load([entry("a"), entry("b")], 5)
    view.load([entry("b")], 9)
    assert ids(view.as_of(9)) == [("b", 1)]
    assert ids(view.as_of(5)) == [("a", 1), ("b", 1)]


async def test_wait_for_returns_once_the_sequence_is_applied() -> None:
    view = RegistryView()
    view.load([], 3)
    assert await view.wait_for(None, 0.01)
    assert await view.wait_for(3, 0.01)
    assert not await view.wait_for(4, 0.05)

    async def later() -> None:
        await asyncio.sleep(0.05)
        view.apply("a", entry("a"), 4)
        await view.advanced()

    task = asyncio.create_task(later())
    assert await view.wait_for(4, 5)
    await task


def test_the_safety_net_takes_a_difference_in_only_when_it_persists() -> None:
    view = RegistryView()
    view.load([entry("a")], 7)
    # One reload that differs (an event may be in flight): nothing changes yet.
    assert view.reconcile([entry("a"), entry("b")]) == []
    assert ids(view.current()) == [("a", 1)]
    # The same difference again: taken in at the applied sequence.
    assert view.reconcile([entry("a"), entry("b")]) == ["b"]
    assert ids(view.current()) == [("a", 1), ("b", 1)]
    # A difference that the event resolves in between is never taken in.
    assert view.reconcile([entry("b")]) == []
    view.apply("a", None, 8)
    assert view.reconcile([entry("b")]) == []
    assert ids(view.current()) == [("b", 1)]


def test_a_change_is_applied_as_it_left_the_runbook_not_as_the_database_has_it_now(tmp_path: Path) -> None:
    """A watcher that lags reads each change as of itself: an approval that was followed by a
    deprecation before the watcher got to it still makes the runbook approved at that sequence."""
    from rb_api import registry
    from rb_api.definitions import parse_submission
    from rb_scheduler.registry_feed import state_of_change
    from rb_store.db import make_engine, migrate

    engine = make_engine(f"sqlite:///{tmp_path / 'rb.db'}")
    migrate(engine)
    text = "id: lag\nname: x\nversion: 1.0.0\nsteps:\n  - {id: a, type: transform, inputs: {}}\n"
    registry.create(engine, parse_submission(text.encode(), "application/yaml"), "tests")
    approved = registry.set_status(engine, "lag", "APPROVED")
    deprecated = registry.set_status(engine, "lag", "DEPRECATED")
    as_approved = state_of_change(engine, "lag", {"change": "approved", **approved})
    assert as_approved is not None and as_approved.revision == 1
    assert state_of_change(engine, "lag", {"change": "deprecated", **deprecated}) is None
    assert state_of_change(engine, "lag", {"change": "schedule_paused"}) is None, "unsaid: current state"
    assert state_of_change(engine, "lag", {"change": "deleted"}) is None
    engine.dispose()
