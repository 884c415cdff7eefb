"""Upcasting: events recorded in an older schema version, read in the current one.

An event's `schema_version` is the version of its `data` shape. When a shape changes,
SCHEMA_VERSION (rb_common.events) goes up by one and an upcaster is registered for every event
type whose data changed: a pure function from the data in version N to the data in N+1. Types
without an upcaster for a version step kept their shape. Readers apply `upcast` to what they
read (rb_common.bus.read_execution, the file event log, the SQL event store, the recorder's
projection, replay), and `Event.payload` upcasts the data it parses in any case, so the fold only
ever sees current shapes.

The record itself is never rewritten: an upcast event keeps the recorded `hash` and `prev_hash`,
and its `computed_hash()` is that of the event as recorded, so the hash chain of an upcast
stream still verifies.

An event newer than this code (a newer writer, during a rolling upgrade) is left as it is:
there is no way down, and the payload models keep unknown keys (`extra="allow"`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rb_common import events
from rb_common.events import Event, EventType, UpcastEvent

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]

# (event type, version it upgrades from) -> the data in version + 1. Empty while every shape is
# still the one of version 1.
UPCASTERS: dict[tuple[EventType, int], Upcaster] = {}


def upcaster(type_: EventType, from_version: int) -> Callable[[Upcaster], Upcaster]:
    """Register the function that turns `type_`'s data from `from_version` into the next."""

    def register(fn: Upcaster) -> Upcaster:
        key = (type_, from_version)
        if key in UPCASTERS:
            raise ValueError(f"an upcaster for {type_.value} v{from_version} is registered already")
        UPCASTERS[key] = fn
        return fn

    return register


def upcast_data(
    type_: EventType, version: int, data: dict[str, Any], target: int | None = None
) -> dict[str, Any]:
    """`data` of an event of `type_` recorded in `version`, in version `target` (default: the
    current one). The input is not changed."""
    target = events.SCHEMA_VERSION if target is None else target
    while version < target:
        fn = UPCASTERS.get((type_, version))
        if fn is not None:
            data = fn(dict(data))
        version += 1
    return data


def upcast(event: Event, target: int | None = None) -> Event:
    """The event with its data in version `target` (default: current); the same object when
    there is nothing to do (the common case: one integer comparison)."""
    target = events.SCHEMA_VERSION if target is None else target
    if event.schema_version >= target:
        return event
    recorded = event.recorded if isinstance(event, UpcastEvent) else None
    data = upcast_data(event.type, event.schema_version, event.data, target)
    return UpcastEvent.of(recorded or event, data, target)


def upcast_all(recorded: list[Event], target: int | None = None) -> list[Event]:
    return [upcast(event, target) for event in recorded]
