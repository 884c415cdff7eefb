"""Starts the executor refused after their trigger was accepted are recorded as such
(`metadata.refused`) and found for /alerts and /schedules (rb_store.refusals), on SQLite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from recorder_support import make_event
from sqlalchemy import Engine

from rb_common.events import EventType
from rb_common.loader import load_runbook_text
from rb_store.db import make_engine, migrate
from rb_store.recorder import Recorder
from rb_store.refusals import refused_cron_fires, refused_executions

RUNBOOK = """\
id: nightly
name: Nightly
triggers: [{cron: "0 3 * * *"}]
steps:
  - {id: a, type: transform, inputs: {x: 1}}
"""


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    made = make_engine(f"sqlite:///{tmp_path / 'rb.db'}")
    migrate(made)
    yield made
    made.dispose()


def record(
    engine: Engine, execution_id: str, trigger: dict[str, Any], aborted: dict[str, Any] | None
) -> None:
    runbook, _ = load_runbook_text(RUNBOOK)
    recorder = Recorder(engine)
    recorder.apply(
        make_event(
            execution_id, 1, EventType.EXECUTION_REQUESTED, runbook=runbook.snapshot(), trigger=trigger
        )
    )
    if aborted is not None:
        recorder.apply(make_event(execution_id, 2, EventType.EXECUTION_ABORTED, **aborted))


def test_refused_starts_are_marked_and_found(engine: Engine) -> None:
    fire = {"type": "cron", "cron": "0 3 * * *", "fire_time": "2026-12-01T03:00:00+00:00", "index": 0}
    record(
        engine,
        "refused-fire",
        fire,
        {"reason": "the execution queue is full (3 executions wait for a slot)", "refused": True},
    )
    record(engine, "other-fire", {**fire, "fire_time": "2026-12-02T03:00:00+00:00"}, None)
    record(
        engine,
        "unmet",
        {**fire, "fire_time": "2026-12-03T03:00:00+00:00"},
        {"reason": "assumption 'x' not met", "unmet": ["x"]},
    )
    record(
        engine,
        "alert-start",
        {"type": "alert", "source": "grafana"},
        {"reason": "nightly has 1 running executions", "refused": True},
    )

    assert refused_cron_fires(engine, ["nightly"]) == {("nightly", 0): ["2026-12-01T03:00:00+00:00"]}
    assert refused_executions(engine, ["refused-fire", "other-fire", "unmet", "alert-start"]) == {
        "refused-fire": "the execution queue is full (3 executions wait for a slot)",
        "alert-start": "nightly has 1 running executions",
    }
    assert refused_executions(engine, []) == {} and refused_cron_fires(engine, []) == {}
