"""Typed event payloads (rb_common.payloads): one model per event type, and a dump that gives back
exactly the data that was recorded, so wire bytes and hashes never change by going through them."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from rb_common.events import Event, EventType
from rb_common.payloads import (
    PAYLOADS,
    ExecutionFailed,
    StepFailed,
    StepScheduled,
    StepStarted,
    StepSucceeded,
    parse_payload,
)
from rb_common.statuses import STORED_EXECUTION, TERMINAL_EXECUTION, ExecutionStatus, StepStatus

GOLDEN = Path(__file__).resolve().parents[2] / "golden"
LINES = [
    (path.stem, line)
    for path in sorted(GOLDEN.glob("*.jsonl"))
    for line in path.read_text().splitlines()
    if line
]


def test_every_event_type_has_its_model() -> None:
    assert set(PAYLOADS) == set(EventType)
    for type_, model in PAYLOADS.items():
        assert model.TYPE is type_
        assert model.model_config.get("extra") == "allow"


@pytest.mark.parametrize("name", sorted({name for name, _ in LINES}))
def test_golden_events_parse_and_dump_to_the_same_data(name: str) -> None:
    """parse -> dump is the identity on every recorded event: same keys, same order, same
    values, so the event re-serialises to the same bytes and the same hash."""
    for _, line in (item for item in LINES if item[0] == name):
        event = Event.from_json(line)
        payload = event.payload
        assert type(payload) is PAYLOADS[event.type]
        dumped = payload.dump()
        assert list(dumped.items()) == list(event.data.items())
        again = Event.sealed(
            prev_hash=event.prev_hash,
            payload=payload,
            **event.model_dump(exclude={"data", "hash", "prev_hash"}),
        )
        assert again.to_json() == event.to_json()
        assert again.hash == event.hash
        assert orjson.loads(line) == orjson.loads(again.to_json())


def test_the_payload_is_parsed_once_and_follows_the_data() -> None:
    event = Event.from_json(next(line for _, line in LINES if '"step.succeeded"' in line))
    assert event.payload is event.payload
    edited = event.model_copy(update={"data": {**event.data, "outputs": {"x": 1}}})
    payload = edited.payload_as(StepSucceeded)
    assert payload.outputs == {"x": 1}
    assert event.payload_as(StepSucceeded).outputs != {"x": 1}
    with pytest.raises(TypeError):
        event.payload_as(StepFailed)


def test_absent_keys_stay_absent_and_defaults_only_serve_readers() -> None:
    started = parse_payload(EventType.STEP_STARTED, {"step_id": "a", "attempt": 1})
    assert isinstance(started, StepStarted)
    assert (started.phase, started.delivery) == ("main", 1)
    assert started.dump() == {"step_id": "a", "attempt": 1}
    # None written by the producer is kept: it is part of the recorded shape.
    scheduled = StepScheduled(
        step_id="a",
        step_type="wait",
        attempt=1,
        phase="main",
        inputs={},
        timeout=1.0,
        idempotency_key="k",
        not_before=None,
    )
    assert list(scheduled.dump()) == [
        "step_id",
        "step_type",
        "attempt",
        "phase",
        "inputs",
        "timeout",
        "idempotency_key",
        "not_before",
    ]


def test_unknown_keys_are_kept_for_forward_compatibility() -> None:
    data = {"step_id": "a", "attempt": 2, "phase": "main", "error": "boom", "retryable": True, "host": "w1"}
    failed = parse_payload(EventType.STEP_FAILED, data)
    assert isinstance(failed, StepFailed)
    assert failed.model_extra == {"host": "w1"}
    assert list(failed.dump().items()) == list(data.items())
    assert failed.will_retry is None and failed.retryable is True


def test_the_producers_key_orders_are_kept() -> None:
    """Each producer's step.failed (worker, coordinator's retry decision, lost task, cancel,
    unrenderable inputs) dumps in the order it has always been written."""
    shapes = [
        [
            "step_id",
            "attempt",
            "phase",
            "error",
            "retryable",
            "timed_out",
            "started_at",
            "delivery",
            "will_retry",
            "retry_delay",
        ],
        ["step_id", "attempt", "phase", "error", "lost", "retryable", "will_retry", "retry_delay"],
        ["step_id", "attempt", "phase", "error", "cancelled", "retryable"],
        ["step_id", "attempt", "error", "will_retry", "stage"],
    ]
    values = {
        "step_id": "a",
        "attempt": 1,
        "phase": "main",
        "error": "x",
        "retryable": True,
        "timed_out": True,
        "started_at": "2025-01-01T00:00:00+00:00",
        "delivery": 2,
        "will_retry": False,
        "retry_delay": 0.0,
        "lost": True,
        "cancelled": True,
        "stage": "inputs",
    }
    for keys in shapes:
        assert list(StepFailed(**{k: values[k] for k in keys}).dump()) == keys
    failed = ExecutionFailed(reason="r", failed_step="s").model_copy(
        update={"rolled_back": [], "rollback_failed": []}
    )
    assert list(failed.dump()) == ["reason", "failed_step", "rolled_back", "rollback_failed"]


def test_statuses_are_their_strings() -> None:
    assert ExecutionStatus.RUNNING == "RUNNING" and StepStatus.RETRY_WAIT == "RETRY_WAIT"
    assert orjson.dumps({"s": ExecutionStatus.PAUSED}) == b'{"s":"PAUSED"}'
    assert f"{StepStatus.SKIPPED}" == "SKIPPED" and StepStatus.SKIPPED.lower() == "skipped"
    assert STORED_EXECUTION == (
        "QUEUED",
        "RUNNING",
        "WAITING_APPROVAL",
        "PAUSED",
        "SUCCEEDED",
        "FAILED",
        "ABORTED",
        "CANCELLED",
    )
    assert {"SUCCEEDED", "FAILED", "ABORTED", "CANCELLED"} == TERMINAL_EXECUTION
