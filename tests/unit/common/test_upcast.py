"""Upcasting (rb_common.upcast): recorded streams keep folding when a data shape changes.

SCHEMA_VERSION is still 1 and no upcaster is registered; these tests register test-only ones to
exercise the path both ways: a recorded v1 stream read by a (simulated) v2 reader, and a v0
stream (an older shape, simulated) read by this version, through the readers that upcast."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from rb_common import bus as nats_bus
from rb_common.audit import verify_chain
from rb_common.events import SCHEMA_VERSION, Event, EventType, UpcastEvent
from rb_common.memory_bus import memory_bus
from rb_common.payloads import StepSkipped
from rb_common.settings import Settings
from rb_common.upcast import UPCASTERS, upcast, upcast_all, upcast_data, upcaster
from rb_engine.replay import Replayer
from rb_engine.runner import PluginExecutor
from rb_engine.steps.registry import default_registry

GOLDEN = Path(__file__).resolve().parents[2] / "golden"


def load(name: str) -> list[Event]:
    return [Event.from_json(line) for line in (GOLDEN / f"{name}.jsonl").read_text().splitlines() if line]


def replay(events: list[Event]) -> Any:
    return asyncio.run(Replayer(PluginExecutor(default_registry()), Settings()).replay(events))


def test_a_current_event_is_not_touched() -> None:
    events = load("retries")
    assert SCHEMA_VERSION == 1 and all(e.schema_version == 1 for e in events)
    assert all(upcast(e) is e for e in events)


def test_a_recorded_v1_stream_read_as_v2(monkeypatch: pytest.MonkeyPatch) -> None:
    """A v2 that renamed step.skipped's `reason` to `why`: the recorded v1 stream comes out in
    v2 shapes, every other event as it was, and its hash chain still verifies as recorded."""

    def v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
        data["why"] = data.pop("reason")
        return data

    monkeypatch.setitem(UPCASTERS, (EventType.STEP_SKIPPED, 1), v1_to_v2)
    recorded = load("skipped")
    current = upcast_all(recorded, target=2)
    skipped = [(r, c) for r, c in zip(recorded, current, strict=True) if r.type == EventType.STEP_SKIPPED]
    assert skipped
    for before, after in skipped:
        assert isinstance(after, UpcastEvent) and after.schema_version == 2
        assert after.data == {"step_id": before.data["step_id"], "why": before.data["reason"]}
        assert before.data["reason"]  # the recorded event is not changed
        assert after.hash == before.hash and after.computed_hash() == before.hash
    assert all(
        c.data == r.data for r, c in zip(recorded, current, strict=True) if r.type != EventType.STEP_SKIPPED
    )
    assert verify_chain(current) == []
    # An edit to an upcast event is still an edit.
    forged = current[5].model_copy(update={"data": {**current[5].data, "forged": True}})
    assert verify_chain([*current[:5], forged, *current[6:]])


def _as_v0(events: list[Event]) -> list[Event]:
    """The stream as a (fictional) v0 writer would have recorded it: step.skipped said `because`,
    and every event is sealed as v0."""
    out: list[Event] = []
    prev: str | None = None
    for event in events:
        data = dict(event.data)
        if event.type == EventType.STEP_SKIPPED:
            data = {"step_id": data["step_id"], "because": data["reason"]}
        fields = event.model_dump(exclude={"data", "hash", "prev_hash", "schema_version"})
        old = Event.sealed(prev_hash=prev, data=data, schema_version=0, **fields)
        out.append(old)
        prev = old.hash
    return out


@pytest.fixture
def v0_upcaster(monkeypatch: pytest.MonkeyPatch) -> None:
    def v0_to_v1(data: dict[str, Any]) -> dict[str, Any]:
        return {"step_id": data["step_id"], "reason": data["because"]}

    monkeypatch.setitem(UPCASTERS, (EventType.STEP_SKIPPED, 0), v0_to_v1)


@pytest.mark.usefixtures("v0_upcaster")
def test_a_v0_stream_read_through_the_bus_replays_verified() -> None:
    old = _as_v0(load("skipped"))
    assert verify_chain(old) == []

    async def read_back() -> list[Event]:
        bus = memory_bus()
        await nats_bus.append_events(bus, old, 0)
        return [e for e, _ in await nats_bus.read_execution(bus, old[0].execution_id)]

    current = asyncio.run(read_back())
    assert [e.schema_version for e in current] == [1] * len(old)
    assert [e.data for e in current] == [e.data for e in load("skipped")]
    assert verify_chain(current) == []
    assert replay(current).deviations == []


@pytest.mark.usefixtures("v0_upcaster")
def test_the_payload_of_an_old_event_is_upcast_even_when_read_raw() -> None:
    old = next(e for e in _as_v0(load("skipped")) if e.type == EventType.STEP_SKIPPED)
    assert "because" in old.data
    payload = old.payload_as(StepSkipped)
    assert payload.reason == old.data["because"] and "because" not in payload.dump()


def test_newer_events_are_left_as_they_are() -> None:
    event = load("skipped")[3]
    newer = event.model_copy(update={"schema_version": SCHEMA_VERSION + 1})
    assert upcast(newer) is newer
    assert upcast_data(event.type, 2, {"x": 1}) == {"x": 1}


def test_an_upcaster_is_registered_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("rb_common.upcast.UPCASTERS", {})
    upcaster(EventType.STEP_SKIPPED, 7)(lambda d: d)
    with pytest.raises(ValueError):
        upcaster(EventType.STEP_SKIPPED, 7)(lambda d: d)
