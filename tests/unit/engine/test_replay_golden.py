"""Golden recorded executions (tests/golden) must replay verified, to the same canonical result.

A change to the coordinator that alters any decision (which step, which attempt, which inputs,
retry delays, skips, compensations, KPIs) fails here. The recordings were made with `rb run
--fixture` on the example runbooks and are replayed exactly as stored.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from rb_common.audit import verify_chain
from rb_common.events import Event, EventType
from rb_common.settings import Settings
from rb_engine.replay import Replayer
from rb_engine.result import canonical_result_json
from rb_engine.runner import PluginExecutor
from rb_engine.steps.registry import default_registry

GOLDEN = Path(__file__).resolve().parents[2] / "golden"
CASES = sorted(p.stem for p in GOLDEN.glob("*.jsonl"))


def load(name: str) -> list[Event]:
    return [Event.from_json(line) for line in (GOLDEN / f"{name}.jsonl").read_text().splitlines() if line]


def replay(events: list[Event]):  # type: ignore[no-untyped-def]
    return asyncio.run(Replayer(PluginExecutor(default_registry()), Settings()).replay(events))


def test_the_golden_set_covers_the_interesting_paths() -> None:
    assert set(CASES) == {"continued-failure", "retries", "rollback", "skipped"}
    types = {name: [e.type for e in load(name)] for name in CASES}
    assert any(e.data.get("will_retry") for e in load("retries"))
    assert EventType.STEP_SKIPPED in types["skipped"]
    assert EventType.ROLLBACK_STARTED in types["rollback"]
    continued = load("continued-failure")
    assert any(e.type == EventType.STEP_FAILED and not e.data.get("will_retry") for e in continued)
    assert continued[-1].type == EventType.EXECUTION_SUCCEEDED


@pytest.mark.parametrize("name", CASES)
def test_golden_execution_replays_verified(name: str) -> None:
    events = load(name)
    report = replay(events)
    assert report.deviations == []
    assert canonical_result_json(report.state) == (GOLDEN / f"{name}.expected.json").read_text()
    assert verify_chain(events) == []


def _edit_output(events: list[Event]) -> tuple[list[Event], str]:
    for i, event in enumerate(events):
        if event.type == EventType.STEP_SUCCEEDED and event.data.get("outputs"):
            outputs = {k: "tampered" for k in event.data["outputs"]}
            events[i] = event.model_copy(update={"data": {**event.data, "outputs": outputs}})
            return events, event.data["step_id"]
    raise AssertionError("no outputs to edit")


def test_an_edited_output_is_named_by_replay_and_audit() -> None:
    events, step = _edit_output(load("retries"))
    report = replay(events)
    assert step in report.deviating_steps()
    assert any(d.field.startswith("outputs.") for d in report.deviations)
    problems = verify_chain(events)
    assert problems and "edited" in problems[0].problem


def test_a_dropped_event_is_named_by_replay_and_audit() -> None:
    events = load("retries")
    dropped = next(
        i for i, e in enumerate(events) if e.type == EventType.STEP_SCHEDULED and e.data["attempt"] == 2
    )
    del events[dropped]
    report = replay(events)
    assert not report.verified
    problems = verify_chain(events)
    assert problems[0].seq == dropped + 2  # the event that followed the gap is the first to break
    assert "removed, inserted or reordered" in problems[0].problem


def test_reordered_events_are_named_by_replay_and_audit() -> None:
    events = load("rollback")
    i = next(i for i, e in enumerate(events) if e.type == EventType.ROLLBACK_STARTED)
    events[i], events[i + 1] = events[i + 1], events[i]
    report = replay(events)
    assert not report.verified
    assert {p.seq for p in verify_chain(events)} >= {events[i].seq, events[i + 1].seq}


def test_an_inserted_event_is_named_by_audit() -> None:
    events = load("skipped")
    extra = events[3].model_copy(update={"id": "forged"})
    events.insert(4, extra)
    problems = verify_chain(events)
    assert any(p.event_id == "forged" for p in problems)


def test_a_changed_definition_is_reported_at_the_first_divergence() -> None:
    events = load("retries")
    requested = events[0]
    runbook = json.loads(json.dumps(requested.data["runbook"]))
    for step in runbook["steps"]:
        if step["id"] == "enrich":
            step["retry"] = {"max_attempts": 2}
    events[0] = requested.model_copy(update={"data": {**requested.data, "runbook": runbook}})
    report = replay(events)
    assert [(d.step, d.field) for d in report.deviations][:1] == [("enrich", "will_retry")]
