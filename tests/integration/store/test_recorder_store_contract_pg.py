"""The EventStore contract against real PostgreSQL, plus what only a real server shows."""

from __future__ import annotations

import threading

import pytest
from recorder_store_contract import (  # noqa: F401  (collected by pytest)
    test_contract_appended_events_read_back_in_seq_order,
    test_contract_executions_are_independent_streams,
    test_contract_first_seq_must_be_one,
    test_contract_gap_is_rejected_and_nothing_is_written,
    test_contract_recorded_run_round_trips_and_folds_the_same,
    test_contract_second_writer_of_a_seq_loses,
    test_contract_unknown_execution_reads_empty,
)
from recorder_support import make_event, new_execution_id
from sqlalchemy import Engine

from rb_common.events import Event
from rb_common.ports import ConcurrencyError
from rb_store.store import SqlEventStore

pytestmark = pytest.mark.integration


@pytest.fixture
def event_store(pg_engine: Engine) -> SqlEventStore:
    return SqlEventStore(pg_engine)


def test_racing_writers_of_one_seq_exactly_one_wins(pg_engine: Engine) -> None:
    eid = new_execution_id()
    store = SqlEventStore(pg_engine)
    store.append(make_event(eid, 1))
    contenders = [make_event(eid, 2) for _ in range(8)]
    barrier = threading.Barrier(len(contenders))
    outcomes: list[str] = []

    def write(event: Event) -> None:
        barrier.wait()
        try:
            SqlEventStore(pg_engine).append(event)
            outcomes.append("ok")
        except ConcurrencyError:
            outcomes.append("lost")

    threads = [threading.Thread(target=write, args=(e,)) for e in contenders]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["lost"] * 7 + ["ok"]
    stored = store.read(eid)
    assert [e.seq for e in stored] == [1, 2] and stored[1] in contenders
