"""An event's hash is sha256 of the canonical JSON of its pydantic JSON-mode dump (without
`hash`). Plain JSON data is hashed without the dump (the hot path); these tests compare that
with the dump for every recorded golden event and for data that is not plain JSON."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from rb_common.canonical import digest, plain_canonical_bytes
from rb_common.events import Event, EventType

GOLDEN = Path(__file__).resolve().parents[2] / "golden"


def by_dump(event: Event) -> str:
    """The hash the long way: the JSON-mode dump, then its canonical bytes."""
    return digest(event.model_dump(mode="json", exclude={"hash"}))


def sealed(data: dict[str, Any], time: datetime | None = None) -> Event:
    return Event.sealed(
        prev_hash="sha256:" + "ab" * 32,
        id=uuid.uuid4().hex,
        execution_id="ex1",
        seq=3,
        type=EventType.STEP_SUCCEEDED,
        time=time or datetime(2025, 1, 1, 12, 0, 0, 123456, tzinfo=UTC),
        actor="rb-worker",
        data=data,
    )


def test_every_golden_event_hashes_as_recorded_and_as_its_dump() -> None:
    events = [
        Event.from_json(line)
        for path in sorted(GOLDEN.glob("*.jsonl"))
        for line in path.read_text().splitlines()
        if line
    ]
    assert len(events) > 50
    for event in events:
        assert event.computed_hash() == event.hash == by_dump(event)


class Colour(enum.StrEnum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


@dataclass
class Point:
    x: int


PLAIN: list[Any] = [
    {},
    {"result": {"z": 1, "a": [1, 2.5, None, True, "x"]}, "outputs": {"é": "ü", "emoji": "🙂"}},
    {"floats": [1e-7, 1e300, -0.0, 0.1, 5e-324, 1.0], "ints": [0, -(2**63), 2**64 - 1]},
    {"nan": float("nan"), "inf": float("inf"), "minus_inf": float("-inf")},
    {"tuple": (1, "two", (3,)), "enum": Colour.RED, "int_enum": Level.HIGH},
    {"nested": {"b": {"d": 1, "c": [{"y": 1, "x": 2}]}}, "control": '\u0000\n\t"\\'},
    {"uuid": uuid.UUID(int=7)},  # orjson writes str(uuid), as the dump does
]
NOT_PLAIN: list[Any] = [
    {"big": 2**64},
    {"small": -(2**63) - 1},
    {"when": datetime(2025, 1, 1, tzinfo=UTC)},
    {"when": datetime(2025, 1, 1, tzinfo=timezone(timedelta(hours=2)))},
    {"bytes": b"raw"},
    {"set": {3, 1, 2}},
    {"keys": {1: "one", 2: "two"}},
    {"decimal": Decimal("1.50")},
    {"point": Point(1)},
]


@pytest.mark.parametrize("data", PLAIN + NOT_PLAIN)
def test_the_hash_is_that_of_the_json_mode_dump(data: dict[str, Any]) -> None:
    event = sealed(data)
    assert event.hash == event.computed_hash() == by_dump(event)


@pytest.mark.parametrize("data", NOT_PLAIN)
def test_what_is_not_plain_json_is_refused_by_the_shortcut(data: dict[str, Any]) -> None:
    with pytest.raises(TypeError):
        plain_canonical_bytes(data)


@pytest.mark.parametrize(
    "time",
    [
        datetime(2025, 1, 1, tzinfo=UTC),  # no microseconds
        datetime(2025, 6, 1, 8, 30, 1, 5, tzinfo=timezone(timedelta(hours=-5, minutes=-30))),
        datetime(2025, 1, 1),  # naive
    ],
)
def test_the_time_is_written_as_the_dump_writes_it(time: datetime) -> None:
    event = sealed({"x": 1}, time)
    assert event.hash == by_dump(event)
