"""The recorder on SQLite: rows match the fold, idempotency, gaps; plus the pure projection and
the list query (which needs a database of its own)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from recorder_projection_cases import (  # noqa: F401  (collected by pytest)
    test_case_an_event_without_its_first_is_a_gap,
    test_case_cold_and_stale_caches_give_the_same_rows,
    test_case_conflicting_event_for_a_recorded_seq_is_skipped,
    test_case_consumer_offset_is_a_high_water_mark,
    test_case_events_the_fold_ignores_still_advance_last_seq,
    test_case_gap_raises_and_writes_nothing,
    test_case_read_side_shapes,
    test_case_redelivery_is_idempotent,
    test_case_reproject_rebuilds_identical_rows,
    test_case_rows_match_the_fold_after_every_event,
)
from recorder_support import SCENARIOS, make_event, make_run, scenario_events
from sqlalchemy import Engine

from rb_common.events import Event, EventType
from rb_store.db import make_engine, migrate
from rb_store.projection import Projection, advance, execution_row, project, step_rows
from rb_store.queries import get_execution, get_step_logs, list_executions
from rb_store.recorder import ApplyResult, Recorder


@pytest.fixture
def recorder_engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'rb.db'}")
    migrate(engine)
    yield engine
    engine.dispose()


def test_no_rows_before_execution_requested() -> None:
    assert execution_row(Projection()) is None
    assert step_rows(Projection()) == []
    stray = make_event("x", 1, EventType.NOTIFICATION_SENT)
    assert execution_row(advance(Projection(), stray)) is None


def test_projection_keeps_every_attempts_error_but_not_compensation_errors() -> None:
    events = scenario_events("retries_then_succeeds")
    rows = {r["step_id"]: r for r in step_rows(project(events))}
    assert rows["fetch"]["errors"] == ["HTTP 503", "HTTP 502"]
    assert rows["report"]["errors"] == [] and rows["never"]["errors"] == []
    rollback = project(scenario_events("rollback_with_failed_compensation"))
    by_step = {r["step_id"]: r for r in step_rows(rollback)}
    assert by_step["stop"]["rollback_status"] == "FAILED" and by_step["stop"]["errors"] == []
    assert by_step["migrate"]["errors"] == ["schema locked"]
    row = execution_row(rollback)
    assert row is not None and row["metadata"]["rollback_errors"] == {"stop": "start refused"}


def test_execution_row_reflects_status_through_the_run() -> None:
    events = scenario_events("retries_then_succeeds")
    statuses = []
    projection = Projection()
    for event in events:
        projection = advance(projection, event)
        row = execution_row(projection)
        assert row is not None
        statuses.append(row["status"])
    assert statuses[0] == "QUEUED" and statuses[1] == "RUNNING" and statuses[-1] == "SUCCEEDED"
    row = execution_row(projection)
    assert row is not None
    assert row["actor_id"] == "tester"
    assert row["metadata"]["legal_basis"] == "contract"
    assert row["metadata"]["params"] == {"region": "eu"}


def test_an_event_the_fold_rejects_is_recorded_and_reported(recorder_engine: Engine) -> None:
    stream = scenario_events("continue_then_succeeds")
    eid = stream[0].execution_id
    recorder = Recorder(recorder_engine)
    recorder.apply(stream[0])
    bad = make_event(eid, 2, EventType.STEP_SUCCEEDED, step_id="no-such-step")
    assert recorder.apply(bad) == ApplyResult.APPLIED
    shifted = [Event(**{**e.model_dump(), "seq": e.seq + 1}) for e in stream[1:]]
    for event in shifted:
        assert recorder.apply(event) == ApplyResult.APPLIED
    detail = get_execution(recorder_engine, eid)
    assert detail is not None and detail["status"] == "SUCCEEDED"
    row = execution_row(Recorder(recorder_engine, cache_size=0).projection(eid))
    assert row is not None and row["last_seq"] == len(stream) + 1
    assert len(row["metadata"]["projection_errors"]) == 1
    assert "no-such-step" in row["metadata"]["projection_errors"][0]


def test_list_executions_filters_pages_and_counts(recorder_engine: Engine) -> None:
    recorder = Recorder(recorder_engine)
    ids = []
    for i, name in enumerate(["retries_then_succeeds", "abort_skips_dependants", "retries_then_succeeds"]):
        yaml_text, fixture, _ = SCENARIOS[name]
        fixture = {**fixture, "clock": f"2025-03-0{i + 1}T00:00:00Z"}
        state, events = make_run(yaml_text, fixture)
        for event in events:
            recorder.apply(event)
        ids.append(state.execution_id)
    items, total = list_executions(recorder_engine)
    assert total == 3 and [i["id"] for i in items] == ids[::-1]  # newest first
    assert items[0]["requested_at"] == "2025-03-03T00:00:00+00:00"
    items, total = list_executions(recorder_engine, runbook_id="rec-retry")
    assert total == 2 and {i["id"] for i in items} == {ids[0], ids[2]}
    items, total = list_executions(recorder_engine, status="failed")
    assert total == 1 and items[0]["id"] == ids[1] and "boom" in items[0]["reason"]
    items, total = list_executions(recorder_engine, limit=1, offset=1)
    assert total == 3 and [i["id"] for i in items] == [ids[1]]
    items, total = list_executions(recorder_engine, runbook_id="nope")
    assert (items, total) == ([], 0)


def test_running_execution_shows_the_last_attempts_error(recorder_engine: Engine) -> None:
    stream = scenario_events("retries_then_succeeds")
    recorder = Recorder(recorder_engine)
    # Up to the second attempt's step.scheduled: the step is SCHEDULED, its last error 503.
    cut = next(
        i
        for i, e in enumerate(stream)
        if e.type == EventType.STEP_SCHEDULED and e.data["attempt"] == 2 and e.data["step_id"] == "fetch"
    )
    for event in stream[: cut + 1]:
        recorder.apply(event)
    detail = get_execution(recorder_engine, stream[0].execution_id)
    assert detail is not None and detail["status"] == "RUNNING" and detail["completed_at"] is None
    fetch = next(s for s in detail["steps"] if s["id"] == "fetch")
    assert (fetch["status"], fetch["attempts"], fetch["error"]) == ("SCHEDULED", 2, "HTTP 503")
    logs = get_step_logs(recorder_engine, stream[0].execution_id)
    assert next(r for r in logs if r["step_id"] == "report")["status"] == "PENDING"


def test_times_are_stored_as_utc_whatever_the_offset(recorder_engine: Engine) -> None:
    from datetime import timezone

    stream = scenario_events("abort_skips_dependants")
    plus2 = timezone(timedelta(hours=2))
    moved = [Event(**{**e.model_dump(), "time": e.time.astimezone(plus2)}) for e in stream]
    recorder = Recorder(recorder_engine)
    for event in moved:
        recorder.apply(event)
    detail = get_execution(recorder_engine, stream[0].execution_id)
    assert detail is not None
    assert detail["completed_at"] == stream[-1].time.isoformat()
