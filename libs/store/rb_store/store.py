"""The EventStore port over the `events` table (PostgreSQL or SQLite)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select
from sqlalchemy.exc import IntegrityError

from rb_common.events import Event
from rb_common.ports import ConcurrencyError
from rb_common.upcast import upcast
from rb_store.projection import utc
from rb_store.tables import events


def event_row(event: Event) -> dict[str, Any]:
    return {
        "execution_id": event.execution_id,
        "seq": event.seq,
        "id": event.id,
        "type": event.type.value,
        "time": utc(event.time),
        "event": event.model_dump(mode="json"),
    }


def last_seq(connection: Connection, execution_id: str) -> int:
    """The highest seq stored for an execution (0 if none)."""
    value = connection.scalar(select(func.max(events.c.seq)).where(events.c.execution_id == execution_id))
    return int(value or 0)


def read_events(connection: Connection, execution_id: str, after: int = 0) -> list[Event]:
    rows = connection.execute(
        select(events.c.event)
        .where(events.c.execution_id == execution_id, events.c.seq > after)
        .order_by(events.c.seq)
    )
    return [upcast(Event.model_validate(row.event)) for row in rows]  # in the current schema


class SqlEventStore:
    """Append-only per-execution streams; a seq that is not last+1 is a ConcurrencyError.

    Two writers racing for the same seq both pass the last+1 check, and the primary key
    (execution_id, seq) lets exactly one insert commit; the other gets ConcurrencyError too.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def append(self, event: Event) -> None:
        try:
            with self.engine.begin() as connection:
                last = last_seq(connection, event.execution_id)
                if event.seq != last + 1:
                    raise ConcurrencyError(f"{event.execution_id}: expected seq {last + 1}, got {event.seq}")
                connection.execute(insert(events).values(event_row(event)))
        except IntegrityError:
            raise ConcurrencyError(
                f"{event.execution_id}: seq {event.seq} or event {event.id} was already appended"
            ) from None

    def read(self, execution_id: str) -> list[Event]:
        with self.engine.connect() as connection:
            return read_events(connection, execution_id)

    def execution_ids(self) -> list[str]:
        """Every execution with events, oldest first (by the time of its first event)."""
        first = func.min(events.c.time)
        query = (
            select(events.c.execution_id)
            .group_by(events.c.execution_id)
            .order_by(first, events.c.execution_id)
        )
        with self.engine.connect() as connection:
            return list(connection.scalars(query))
