"""The recorder's projection cases on real PostgreSQL, and recorders racing on one database."""

from __future__ import annotations

import threading

import pytest
from recorder_projection_cases import (  # noqa: F401  (collected by pytest)
    event_count,
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
from recorder_support import assert_projection_matches_fold, scenario_events
from sqlalchemy import Engine

from rb_store.recorder import ApplyResult, Recorder

pytestmark = pytest.mark.integration


@pytest.fixture
def recorder_engine(pg_engine: Engine) -> Engine:
    return pg_engine


def test_recorders_racing_on_the_same_events_apply_each_once(pg_engine: Engine) -> None:
    """Two replicas handed the same messages (redelivery to another replica): every event is
    applied exactly once, the rest are duplicates, and the rows match the fold."""
    stream = scenario_events("rollback_with_failed_compensation")
    results: list[list[ApplyResult]] = [[], [], []]
    barrier = threading.Barrier(len(results))

    def replica(index: int) -> None:
        recorder = Recorder(pg_engine)
        barrier.wait()
        for event in stream:
            results[index].append(recorder.apply(event))

    threads = [threading.Thread(target=replica, args=(i,)) for i in range(len(results))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    flat = [r for rs in results for r in rs]
    assert flat.count(ApplyResult.APPLIED) == len(stream)
    assert flat.count(ApplyResult.DUPLICATE) == len(stream) * (len(results) - 1)
    assert event_count(pg_engine, stream[0].execution_id) == len(stream)
    assert_projection_matches_fold(pg_engine, stream)
