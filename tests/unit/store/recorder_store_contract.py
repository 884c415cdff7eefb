"""The EventStore port's contract, written once and run against every implementation.

A test module imports these functions and defines an `event_store` fixture returning a fresh
(or shared) store; execution ids are unique per test so a shared database is fine.
"""

from __future__ import annotations

from typing import Any

import pytest
from recorder_support import make_event, new_execution_id, scenario_events

from rb_common.events import EventType
from rb_common.ports import ConcurrencyError
from rb_engine.coordinator import fold


def test_contract_unknown_execution_reads_empty(event_store: Any) -> None:
    assert event_store.read(new_execution_id()) == []


def test_contract_appended_events_read_back_in_seq_order(event_store: Any) -> None:
    eid = new_execution_id()
    written = [
        make_event(eid, 1, EventType.EXECUTION_REQUESTED, note="first", nested={"a": [1, 2.5, None, "x"]}),
        make_event(eid, 2, EventType.EXECUTION_STARTED),
        make_event(eid, 3, EventType.NOTIFICATION_SENT, channel="slack", unicode="✓ é"),
    ]
    for event in written:
        event_store.append(event)
    assert event_store.read(eid) == written


def test_contract_first_seq_must_be_one(event_store: Any) -> None:
    eid = new_execution_id()
    with pytest.raises(ConcurrencyError):
        event_store.append(make_event(eid, 2))
    assert event_store.read(eid) == []


def test_contract_gap_is_rejected_and_nothing_is_written(event_store: Any) -> None:
    eid = new_execution_id()
    first = make_event(eid, 1)
    event_store.append(first)
    with pytest.raises(ConcurrencyError):
        event_store.append(make_event(eid, 3))
    assert event_store.read(eid) == [first]


def test_contract_second_writer_of_a_seq_loses(event_store: Any) -> None:
    eid = new_execution_id()
    winner = make_event(eid, 1)
    event_store.append(winner)
    with pytest.raises(ConcurrencyError):
        event_store.append(make_event(eid, 1))
    with pytest.raises(ConcurrencyError):
        event_store.append(winner)  # the very same event again
    assert event_store.read(eid) == [winner]
    event_store.append(second := make_event(eid, 2))
    assert event_store.read(eid) == [winner, second]


def test_contract_executions_are_independent_streams(event_store: Any) -> None:
    one, two = new_execution_id(), new_execution_id()
    event_store.append(a1 := make_event(one, 1))
    event_store.append(b1 := make_event(two, 1))
    event_store.append(a2 := make_event(one, 2))
    assert event_store.read(one) == [a1, a2]
    assert event_store.read(two) == [b1]
    ids = event_store.execution_ids()
    assert one in ids and two in ids
    assert len(ids) == len(set(ids))


def test_contract_recorded_run_round_trips_and_folds_the_same(event_store: Any) -> None:
    events = scenario_events("retries_then_succeeds")
    for event in events:
        event_store.append(event)
    read = event_store.read(events[0].execution_id)
    assert read == events
    assert [e.to_json() for e in read] == [e.to_json() for e in events]
    assert fold(read) == fold(events)


CONTRACT_TESTS = [
    test_contract_unknown_execution_reads_empty,
    test_contract_appended_events_read_back_in_seq_order,
    test_contract_first_seq_must_be_one,
    test_contract_gap_is_rejected_and_nothing_is_written,
    test_contract_second_writer_of_a_seq_loses,
    test_contract_executions_are_independent_streams,
    test_contract_recorded_run_round_trips_and_folds_the_same,
]
