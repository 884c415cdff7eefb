"""Recorder behaviour written once, run on SQLite (unit) and PostgreSQL (integration).

A test module imports these functions and defines a `recorder_engine` fixture: a migrated
engine. Execution ids are unique per test, so a database shared by a session is fine.
"""

from __future__ import annotations

from typing import Any

import pytest
from recorder_support import SCENARIOS, assert_projection_matches_fold, make_event, scenario_events
from sqlalchemy import Engine, func, select

from rb_common.events import Event, EventType
from rb_store.queries import get_events, get_execution, get_step_logs
from rb_store.recorder import ApplyResult, Recorder, SequenceGap
from rb_store.tables import consumer_offsets, events, runbook_executions, runbook_step_logs


def snapshot(engine: Engine, execution_id: str) -> dict[str, Any]:
    """Every row the recorder keeps for one execution, comparable with ==."""
    with engine.connect() as c:
        return {
            "events": [
                dict(r)
                for r in c.execute(
                    select(events).where(events.c.execution_id == execution_id).order_by(events.c.seq)
                ).mappings()
            ],
            "execution": [
                dict(r)
                for r in c.execute(
                    select(runbook_executions).where(runbook_executions.c.id == execution_id)
                ).mappings()
            ],
            "steps": [
                dict(r)
                for r in c.execute(
                    select(runbook_step_logs)
                    .where(runbook_step_logs.c.execution_id == execution_id)
                    .order_by(runbook_step_logs.c.step_id)
                ).mappings()
            ],
        }


def event_count(engine: Engine, execution_id: str) -> int:
    with engine.connect() as c:
        return int(c.scalar(select(func.count()).where(events.c.execution_id == execution_id)) or 0)


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_case_rows_match_the_fold_after_every_event(recorder_engine: Engine, scenario: str) -> None:
    stream = scenario_events(scenario)
    recorder = Recorder(recorder_engine)
    for i, event in enumerate(stream, 1):
        assert recorder.apply(event) == ApplyResult.APPLIED
        assert_projection_matches_fold(recorder_engine, stream[:i])
    assert get_events(recorder_engine, stream[0].execution_id) == [e.model_dump(mode="json") for e in stream]


def test_case_redelivery_is_idempotent(recorder_engine: Engine) -> None:
    stream = scenario_events("retries_then_succeeds")
    eid = stream[0].execution_id
    recorder = Recorder(recorder_engine)
    for event in stream:
        assert recorder.apply(event) == ApplyResult.APPLIED
    before = snapshot(recorder_engine, eid)
    # The same event twice in a row, then the whole stream again (a consumer restart).
    assert recorder.apply(stream[-1]) == ApplyResult.DUPLICATE
    for event in stream:
        assert recorder.apply(event) == ApplyResult.DUPLICATE
    # And through a recorder with a cold cache.
    assert Recorder(recorder_engine).apply(stream[3]) == ApplyResult.DUPLICATE
    assert snapshot(recorder_engine, eid) == before
    assert event_count(recorder_engine, eid) == len(stream)
    assert_projection_matches_fold(recorder_engine, stream)


def test_case_gap_raises_and_writes_nothing(recorder_engine: Engine) -> None:
    stream = scenario_events("continue_then_succeeds")
    eid = stream[0].execution_id
    recorder = Recorder(recorder_engine)
    recorder.apply(stream[0])
    before = snapshot(recorder_engine, eid)
    with pytest.raises(SequenceGap) as caught:
        recorder.apply(stream[2])
    assert (caught.value.expected, caught.value.got) == (2, 3)
    assert snapshot(recorder_engine, eid) == before
    # Redelivery fills the gap: the missing event, then the one that was refused.
    for event in stream[1:]:
        assert recorder.apply(event) == ApplyResult.APPLIED
    assert_projection_matches_fold(recorder_engine, stream)


def test_case_an_event_without_its_first_is_a_gap(recorder_engine: Engine) -> None:
    stream = scenario_events("abort_skips_dependants")
    with pytest.raises(SequenceGap):
        Recorder(recorder_engine).apply(stream[1])
    assert event_count(recorder_engine, stream[0].execution_id) == 0


def test_case_conflicting_event_for_a_recorded_seq_is_skipped(recorder_engine: Engine) -> None:
    stream = scenario_events("abort_skips_dependants")
    eid = stream[0].execution_id
    recorder = Recorder(recorder_engine)
    for event in stream:
        recorder.apply(event)
    before = snapshot(recorder_engine, eid)
    impostor = Event(**{**stream[2].model_dump(), "id": "impostor-" + stream[2].id[:20]})
    assert recorder.apply(impostor) == ApplyResult.CONFLICT
    assert snapshot(recorder_engine, eid) == before


def test_case_cold_and_stale_caches_give_the_same_rows(recorder_engine: Engine) -> None:
    stream = scenario_events("rollback_with_failed_compensation")
    # Two recorders on one database take turns (their caches go stale), and one never caches.
    a, b, nocache = (
        Recorder(recorder_engine),
        Recorder(recorder_engine),
        Recorder(recorder_engine, cache_size=0),
    )
    for i, event in enumerate(stream):
        assert (a, b, nocache)[i % 3].apply(event) == ApplyResult.APPLIED
    assert_projection_matches_fold(recorder_engine, stream)
    assert a.projection(stream[0].execution_id).state.status == "FAILED"


def test_case_reproject_rebuilds_identical_rows(recorder_engine: Engine) -> None:
    stream = scenario_events("retries_then_succeeds")
    eid = stream[0].execution_id
    recorder = Recorder(recorder_engine)
    for event in stream:
        recorder.apply(event)
    before = snapshot(recorder_engine, eid)
    with recorder_engine.begin() as c:
        c.execute(runbook_step_logs.delete().where(runbook_step_logs.c.execution_id == eid))
        c.execute(runbook_executions.update().where(runbook_executions.c.id == eid).values(status="BOGUS"))
    Recorder(recorder_engine).reproject(eid)
    assert snapshot(recorder_engine, eid) == before


def test_case_consumer_offset_is_a_high_water_mark(recorder_engine: Engine) -> None:
    stream = scenario_events("continue_then_succeeds")
    consumer = "test-" + stream[0].execution_id
    recorder = Recorder(recorder_engine, consumer=consumer)
    assert recorder.offset() is None
    for i, event in enumerate(stream, 100):
        recorder.apply(event, stream_seq=i)
    top = 100 + len(stream) - 1
    assert recorder.offset() == top
    recorder.apply(stream[0], stream_seq=100)  # a late redelivery does not move it back
    assert recorder.offset() == top
    with recorder_engine.connect() as c:
        rows = c.execute(select(consumer_offsets).where(consumer_offsets.c.consumer == consumer)).all()
    assert len(rows) == 1


def test_case_events_the_fold_ignores_still_advance_last_seq(recorder_engine: Engine) -> None:
    stream = scenario_events("retries_then_succeeds")
    eid = stream[0].execution_id
    recorder = Recorder(recorder_engine)
    for event in stream:
        recorder.apply(event)
    late = make_event(eid, len(stream) + 1, EventType.NOTIFICATION_SENT, channel="slack")
    assert recorder.apply(late) == ApplyResult.APPLIED
    assert_projection_matches_fold(recorder_engine, [*stream, late])
    detail = get_execution(recorder_engine, eid)
    assert detail is not None and detail["status"] == "SUCCEEDED"


def test_case_read_side_shapes(recorder_engine: Engine) -> None:
    stream = scenario_events("retries_then_succeeds")
    eid = stream[0].execution_id
    recorder = Recorder(recorder_engine)
    for event in stream:
        recorder.apply(event)
    detail = get_execution(recorder_engine, eid)
    assert detail is not None
    assert list(detail) == [
        "id",
        "runbook_id",
        "runbook_version",
        "status",
        "started_at",
        "completed_at",
        "trigger",
        "steps",
        "kpis",
    ]
    assert (
        detail["id"] == eid and detail["runbook_id"] == "rec-retry" and detail["runbook_version"] == "1.2.3"
    )
    assert detail["started_at"] == stream[1].time.isoformat()
    assert detail["completed_at"] == stream[-1].time.isoformat()
    assert detail["trigger"] == {"type": "manual", "actor": "alice"}
    # Definition order, not schedule order.
    assert [s["id"] for s in detail["steps"]] == ["report", "fetch", "never"]
    fetch = detail["steps"][1]
    assert set(fetch) == {
        "id",
        "status",
        "attempts",
        "deliveries",
        "started_at",
        "completed_at",
        "outputs",
        "error",
    }
    assert (fetch["status"], fetch["attempts"], fetch["outputs"], fetch["error"]) == (
        "SUCCEEDED",
        3,
        {"n": 7},
        None,
    )
    assert isinstance(fetch["started_at"], str) and fetch["started_at"].endswith("+00:00")
    assert detail["steps"][2]["status"] == "SKIPPED" and detail["steps"][2]["started_at"] is None
    assert detail["kpis"]["kpis"]["fetched"]["value"] == 7
    logs = get_step_logs(recorder_engine, eid)
    assert [r["step_id"] for r in logs] == ["report", "fetch", "never"]
    assert logs[1]["errors"] == ["HTTP 503", "HTTP 502"]
    assert logs[1]["inputs"] == {"url": "http://x/fetch", "token": "${secrets.TOKEN}"}
    assert "s3cr3t" not in str(logs) and "s3cr3t" not in str(get_events(recorder_engine, eid))
    assert get_execution(recorder_engine, "no-such-execution") is None
    assert get_events(recorder_engine, "no-such-execution") == []
    assert get_step_logs(recorder_engine, "no-such-execution") == []


CASES = [
    test_case_rows_match_the_fold_after_every_event,
    test_case_redelivery_is_idempotent,
    test_case_gap_raises_and_writes_nothing,
    test_case_an_event_without_its_first_is_a_gap,
    test_case_conflicting_event_for_a_recorded_seq_is_skipped,
    test_case_cold_and_stale_caches_give_the_same_rows,
    test_case_reproject_rebuilds_identical_rows,
    test_case_consumer_offset_is_a_high_water_mark,
    test_case_events_the_fold_ignores_still_advance_last_seq,
    test_case_read_side_shapes,
]
