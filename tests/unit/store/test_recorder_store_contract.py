"""The EventStore contract against the in-memory twin, the JSON-lines file log and SQLite."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

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
from recorder_support import T0, make_event, new_execution_id

from rb_common.ports import ConcurrencyError, InMemoryEventStore
from rb_engine.eventlog import FileEventStore
from rb_store.db import make_engine, migrate
from rb_store.store import SqlEventStore


@pytest.fixture(params=["memory", "file", "sqlite"])
def event_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "memory":
        yield InMemoryEventStore()
    elif request.param == "file":
        store = FileEventStore(tmp_path / "executions")
        yield store
        store.close()
    else:
        engine = make_engine(f"sqlite:///{tmp_path / 'rb.db'}")
        migrate(engine)
        yield SqlEventStore(engine)
        engine.dispose()


def test_sql_store_is_durable_across_instances_and_orders_execution_ids(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'rb.db'}"
    engine = make_engine(url)
    migrate(engine)
    first, second = new_execution_id(), new_execution_id()
    SqlEventStore(engine).append(make_event(first, 1))
    SqlEventStore(engine).append(make_event(second, 1, at=T0 + timedelta(minutes=1)))
    engine.dispose()
    again = make_engine(url)
    store = SqlEventStore(again)
    assert [e.seq for e in store.read(first)] == [1]
    assert store.execution_ids() == [first, second]
    with pytest.raises(ConcurrencyError):  # a second instance knows the first one's last seq
        store.append(make_event(first, 1))
    again.dispose()
