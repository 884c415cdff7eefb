"""Apply execution events to the event store and the projections, one transaction per event.

Delivery is at-least-once and a subject's messages arrive in order unless one was NAKed, so
`Recorder.apply` is idempotent and refuses to apply an event ahead of its predecessor:

- seq <= last stored seq: already recorded. Same event id -> a redelivery, nothing to do.
  Different id -> two events claim one seq (the expected-last-sequence check on publish should
  make that impossible); logged as an error and skipped, the first one stays the record.
- seq == last + 1: stored, folded, projection rows upserted, consumer offset advanced; all in
  one transaction, so the rows always match the events table.
- seq > last + 1: `SequenceGap`. See its docstring.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, Engine, Table, case, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from rb_common.events import Event
from rb_store.approval_rows import approval_rows, changed_approvals
from rb_store.projection import Projection, advance, changed_steps, execution_row, project, step_rows
from rb_store.store import event_row, last_seq, read_events
from rb_store.tables import approvals, consumer_offsets, events, runbook_executions, runbook_step_logs

log = logging.getLogger(__name__)

DEFAULT_CONSUMER = "recorder"


class SequenceGap(Exception):
    """An event arrived before its predecessor: `got` > `expected` (= last stored seq + 1).

    JetStream delivers the messages of one subject (one execution) in stream order; a gap means
    an earlier event of this execution was NAKed (say, a transient database error) and is on its
    way back. Applying the later event now would fold it onto the wrong state and leave a hole
    in the record; acking it without applying would lose it. So the consumer NAKs it with a
    delay: by the time it is redelivered the missing event has been applied, and it fits.
    """

    def __init__(self, execution_id: str, expected: int, got: int) -> None:
        super().__init__(f"{execution_id}: expected seq {expected}, got {got}")
        self.execution_id = execution_id
        self.expected = expected
        self.got = got


class ApplyResult(StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"  # the same event again: a redelivery
    CONFLICT = "conflict"  # another event already holds this seq; skipped, logged


class _LRU:
    """A small thread-safe LRU of projections by execution id."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[str, Projection] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> Projection | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: str, value: Projection) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def pop(self, key: str) -> None:
        with self._lock:
            self._items.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


def upsert(connection: Connection, table: Table, rows: Sequence[dict[str, Any]], keys: Sequence[str]) -> None:
    """INSERT ... ON CONFLICT (keys) DO UPDATE every other column, on PostgreSQL and SQLite."""
    if not rows:
        return
    dialect = connection.dialect.name
    if dialect in ("postgresql", "sqlite"):
        module = postgresql if dialect == "postgresql" else sqlite
        stmt = module.insert(table)
        columns = [name for name in rows[0] if name not in keys]
        stmt = stmt.on_conflict_do_update(
            index_elements=list(keys), set_={name: stmt.excluded[name] for name in columns}
        )
        connection.execute(stmt, list(rows))
        return
    # Any other database: update, then insert what did not exist (fine under our one-writer-per-
    # event discipline; the two dialects above are the supported ones).
    for row in rows:
        where = [table.c[k] == row[k] for k in keys]
        result = connection.execute(update(table).where(*where).values(row))
        if result.rowcount == 0:
            connection.execute(insert(table).values(row))


def save_offset(connection: Connection, consumer: str, stream_seq: int) -> None:
    """Advance the consumer's high-water mark (never moves back: redeliveries come late)."""
    row = {"consumer": consumer, "stream_seq": stream_seq}
    dialect = connection.dialect.name
    if dialect in ("postgresql", "sqlite"):
        module = postgresql if dialect == "postgresql" else sqlite
        stmt = module.insert(consumer_offsets).values(row)
        newer = case(
            (stmt.excluded.stream_seq > consumer_offsets.c.stream_seq, stmt.excluded.stream_seq),
            else_=consumer_offsets.c.stream_seq,
        )
        connection.execute(
            stmt.on_conflict_do_update(index_elements=["consumer"], set_={"stream_seq": newer})
        )
        return
    current = connection.scalar(
        select(consumer_offsets.c.stream_seq).where(consumer_offsets.c.consumer == consumer)
    )
    if current is None:
        connection.execute(insert(consumer_offsets).values(row))
    elif stream_seq > current:
        connection.execute(
            update(consumer_offsets).where(consumer_offsets.c.consumer == consumer).values(row)
        )


class Recorder:
    """Stores events and keeps the execution / step-log projections in step with them.

    Thread-safe for distinct executions; the service applies one event at a time. Several
    recorder processes may share a database: the primary key on (execution_id, seq) decides
    which insert wins, and a cached projection older than the table is caught up from it.
    """

    def __init__(self, engine: Engine, *, consumer: str = DEFAULT_CONSUMER, cache_size: int = 1024) -> None:
        self.engine = engine
        self.consumer = consumer
        self._cache = _LRU(cache_size)

    def apply(self, event: Event, stream_seq: int | None = None) -> ApplyResult:
        """Record one event (idempotent). `stream_seq` is its JetStream stream sequence, kept as
        the consumer's offset. Raises SequenceGap when the event is ahead of its predecessor."""
        try:
            return self._apply(event, stream_seq)
        except IntegrityError:
            # Another recorder inserted this (execution_id, seq) between our check and our
            # insert. Forget what we cached and classify again: now a duplicate or a conflict.
            self._cache.pop(event.execution_id)
            return self._apply(event, stream_seq)

    def _apply(self, event: Event, stream_seq: int | None) -> ApplyResult:
        execution_id = event.execution_id
        with self.engine.begin() as connection:
            last = last_seq(connection, execution_id)
            if event.seq <= last:
                result = self._classify_old(connection, event)
                if stream_seq is not None:
                    save_offset(connection, self.consumer, stream_seq)
                return result
            if event.seq > last + 1:
                raise SequenceGap(execution_id, last + 1, event.seq)
            before = self._current(connection, execution_id, last)
            after = advance(before, event)
            connection.execute(insert(events).values(event_row(event)))
            self._write(connection, before, after)
            if stream_seq is not None:
                save_offset(connection, self.consumer, stream_seq)
        # Only after the commit: a rolled-back transaction must not leave the cache ahead.
        self._cache.put(execution_id, after)
        if after.problems and after.problems != before.problems:
            log.error("execution %s: the fold rejected an event: %s", execution_id, after.problems[-1])
        return ApplyResult.APPLIED

    def apply_batch(self, items: Sequence[tuple[Event, int | None]]) -> list[ApplyResult | SequenceGap]:
        """Record many events in ONE transaction (one commit instead of one per event), writing
        each execution's projection rows once. Results line up with `items`; an execution whose
        event is ahead of its predecessor gets SequenceGap for it and for its later events."""
        try:
            return self._apply_batch(items)
        except IntegrityError:
            # Raced by another recorder: fall back to one transaction per event.
            self._cache.clear()
            results: list[ApplyResult | SequenceGap] = []
            for event, stream_seq in items:
                try:
                    results.append(self.apply(event, stream_seq))
                except SequenceGap as gap:
                    results.append(gap)
            return results

    def _apply_batch(self, items: Sequence[tuple[Event, int | None]]) -> list[ApplyResult | SequenceGap]:
        results: list[ApplyResult | SequenceGap] = []
        firsts: dict[str, Projection] = {}
        latest: dict[str, Projection] = {}
        lasts: dict[str, int] = {}
        blocked: dict[str, SequenceGap] = {}
        offset: int | None = None
        rows: list[dict[str, Any]] = []
        with self.engine.begin() as connection:
            for event, stream_seq in items:
                execution_id = event.execution_id
                if stream_seq is not None:
                    offset = max(offset or 0, stream_seq)
                if execution_id in blocked:
                    results.append(blocked[execution_id])
                    continue
                if execution_id not in lasts:
                    lasts[execution_id] = last_seq(connection, execution_id)
                last = lasts[execution_id]
                if event.seq <= last:
                    results.append(self._classify_old(connection, event))
                    continue
                if event.seq > last + 1:
                    blocked[execution_id] = SequenceGap(execution_id, last + 1, event.seq)
                    results.append(blocked[execution_id])
                    continue
                before = latest.get(execution_id) or self._current(connection, execution_id, last)
                firsts.setdefault(execution_id, before)
                latest[execution_id] = advance(before, event)
                rows.append(event_row(event))
                lasts[execution_id] = event.seq
                results.append(ApplyResult.APPLIED)
            if rows:
                connection.execute(insert(events), rows)
            execution_rows, steps, asked = [], [], []
            for execution_id, after in latest.items():
                row = execution_row(after)
                if row is not None:
                    execution_rows.append(row)
                steps += step_rows(after, changed_steps(firsts[execution_id], after))
                asked += approval_rows(after, changed_approvals(firsts[execution_id], after))
            # One multi-row upsert per table for the whole batch, not one per execution.
            upsert(connection, runbook_executions, execution_rows, ["id"])
            upsert(connection, runbook_step_logs, steps, ["execution_id", "step_id"])
            upsert(connection, approvals, asked, ["execution_id", "step_id"])
            if offset is not None:
                save_offset(connection, self.consumer, offset)
        for execution_id, after in latest.items():
            self._cache.put(execution_id, after)
            before = firsts[execution_id]
            if after.problems and after.problems != before.problems:
                log.error("execution %s: the fold rejected an event: %s", execution_id, after.problems[-1])
        return results

    def _classify_old(self, connection: Connection, event: Event) -> ApplyResult:
        stored = connection.scalar(
            select(events.c.id).where(events.c.execution_id == event.execution_id, events.c.seq == event.seq)
        )
        if stored == event.id:
            log.debug("execution %s seq %d: redelivered, already recorded", event.execution_id, event.seq)
            return ApplyResult.DUPLICATE
        log.error(
            "execution %s seq %d: event %s conflicts with recorded event %s; keeping the recorded one",
            event.execution_id,
            event.seq,
            event.id,
            stored,
        )
        return ApplyResult.CONFLICT

    def _current(self, connection: Connection, execution_id: str, last: int) -> Projection:
        """The projection as of seq `last`: cached if current, else caught up from the table."""
        cached = self._cache.get(execution_id)
        if cached is not None and cached.seq == last:
            return cached
        if cached is not None and cached.seq < last:
            return project(read_events(connection, execution_id, after=cached.seq), cached)
        if last == 0:
            return Projection()
        return project(read_events(connection, execution_id))

    def _write(self, connection: Connection, before: Projection, after: Projection) -> None:
        row = execution_row(after)
        if row is not None:
            upsert(connection, runbook_executions, [row], ["id"])
        changed = changed_steps(before, after)
        if changed:
            upsert(connection, runbook_step_logs, step_rows(after, changed), ["execution_id", "step_id"])
        if asked := changed_approvals(before, after):
            upsert(connection, approvals, approval_rows(after, asked), ["execution_id", "step_id"])

    def projection(self, execution_id: str) -> Projection:
        """The current projection of an execution (cached, or folded from the table)."""
        with self.engine.connect() as connection:
            return self._current(connection, execution_id, last_seq(connection, execution_id))

    def reproject(self, execution_id: str) -> Projection:
        """Rebuild an execution's rows from its events (after a change of projection code)."""
        with self.engine.begin() as connection:
            projection = project(read_events(connection, execution_id))
            self._write(connection, Projection(), projection)
        self._cache.put(execution_id, projection)
        return projection

    def offset(self) -> int | None:
        """The highest stream sequence this consumer has applied (None: never ran on this DB)."""
        with self.engine.connect() as connection:
            value = connection.scalar(
                select(consumer_offsets.c.stream_seq).where(consumer_offsets.c.consumer == self.consumer)
            )
        return None if value is None else int(value)
