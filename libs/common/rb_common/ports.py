"""Ports the engine writes through, with an in-memory twin for tests."""

from __future__ import annotations

from typing import Protocol

from rb_common.events import Event


class ConcurrencyError(Exception):
    """Another writer appended to the execution first."""


class EventStore(Protocol):
    def append(self, event: Event) -> None:
        """Add the next event of its execution; raises ConcurrencyError on a seq clash."""

    def read(self, execution_id: str) -> list[Event]:
        """All events of an execution in seq order ([] if unknown)."""

    def execution_ids(self) -> list[str]: ...


class InMemoryEventStore:
    def __init__(self) -> None:
        self._events: dict[str, list[Event]] = {}

    def append(self, event: Event) -> None:
        stream = self._events.setdefault(event.execution_id, [])
        if event.seq != len(stream) + 1:
            raise ConcurrencyError(f"{event.execution_id}: expected seq {len(stream) + 1}, got {event.seq}")
        stream.append(event)

    def read(self, execution_id: str) -> list[Event]:
        return list(self._events.get(execution_id, []))

    def execution_ids(self) -> list[str]:
        return list(self._events)
