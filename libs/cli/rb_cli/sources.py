"""Where a recorded execution is read from: the local logs (`rb run`'s, then `rb test`'s), the
JetStream subject, the recorder's events table (DESIGN.md: replay re-consumes the recorded
stream).

An execution id may be given as a prefix. It is resolved against every source asked (`--source`):
a prefix that matches one execution anywhere is that execution; one that matches several is
refused, listing them."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from pathlib import Path

from rb_cli.services import answers
from rb_common.errors import RbError
from rb_common.events import Event
from rb_common.settings import Settings
from rb_engine.eventlog import FileEventStore

SOURCES = ("auto", "local", "nats", "db")
SHOWN_CANDIDATES = 10


def test_events_dir(settings: Settings) -> Path:
    """`rb test` records its scenario runs here, apart from real runs (RB_HOME/executions)."""
    return settings.home / "test-executions"


@dataclass
class _Found:
    """Execution ids matching a prefix, by source, and the events already read."""

    where: dict[str, list[str]] = field(default_factory=dict)  # execution id -> sources
    events: dict[tuple[str, str], list[Event]] = field(default_factory=dict)

    def add(self, execution_id: str, source: str) -> None:
        self.where.setdefault(execution_id, [])
        if source not in self.where[execution_id]:
            self.where[execution_id].append(source)


def _local(settings: Settings, ref: str, found: _Found) -> None:
    for directory, label in (
        (settings.events_dir, f"local log {settings.events_dir}"),
        (test_events_dir(settings), f"rb test log {test_events_dir(settings)}"),
    ):
        if not directory.is_dir():
            continue
        store = FileEventStore(directory)
        for execution_id in store.execution_ids():
            if execution_id.startswith(ref):
                found.add(execution_id, label)
                found.events[(execution_id, label)] = []  # read when chosen


async def _nats(settings: Settings, ref: str, found: _Found, read: bool) -> None:
    from nats.js.errors import NotFoundError

    from rb_common.bus import connect, read_execution

    bus = await connect(settings.nats_url, namespace=settings.namespace, replicas=settings.stream_replicas, name="rb-cli", connect_timeout=2)
    label = f"JetStream {settings.nats_url}"
    try:
        prefix = bus.names.exec_subject("")
        try:
            info = await bus.js.stream_info(bus.names.events_stream, subjects_filter=bus.names.all_of("exec"))
        except NotFoundError:
            return
        for subject in (info.state.subjects or {}) if info.state else {}:
            execution_id = subject[len(prefix) :]
            if execution_id.startswith(ref):
                found.add(execution_id, label)
        if read and ref in found.where and label in found.where[ref]:
            found.events[(ref, label)] = [e for e, _ in await read_execution(bus, ref, timeout=5)]
    finally:
        await bus.close()


def _database_configured(settings: Settings) -> bool:
    return bool(settings.database_url) or (settings.home / "rb.db").exists()


def _database(settings: Settings, ref: str, found: _Found) -> None:
    from sqlalchemy import select

    from rb_store.db import database_url, make_engine
    from rb_store.tables import events

    engine = make_engine(database_url(settings))
    try:
        pattern = ref.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        query = (
            select(events.c.execution_id).where(events.c.execution_id.like(pattern, escape="\\")).distinct()
        )
        with engine.connect() as connection:
            for execution_id in connection.scalars(query):
                found.add(str(execution_id), "recorder database")
    except Exception:  # no schema yet, database down: this source simply has nothing
        return
    finally:
        engine.dispose()


def _read(settings: Settings, execution_id: str, where: str) -> list[Event]:
    if where.startswith("local log"):
        return FileEventStore(settings.events_dir).read(execution_id)
    if where.startswith("rb test log"):
        return FileEventStore(test_events_dir(settings)).read(execution_id)
    if where == "recorder database":
        from rb_store.db import database_url, make_engine
        from rb_store.store import SqlEventStore

        engine = make_engine(database_url(settings))
        try:
            return SqlEventStore(engine).read(execution_id)
        finally:
            engine.dispose()
    found = _Found()
    found.add(execution_id, where)
    asyncio.run(_nats(settings, execution_id, found, read=True))
    return found.events.get((execution_id, where), [])


def candidates(ref: str, settings: Settings, source: str = "auto") -> dict[str, list[str]]:
    """Every recorded execution whose id starts with `ref`, with the sources that hold it."""
    if source not in SOURCES:
        raise RbError(f"--source {source!r}: choose one of {', '.join(SOURCES)}")
    if not ref or not ref.replace("-", "").replace("_", "").isalnum():
        raise RbError(f"{ref!r} is not an execution id")
    found = _Found()
    if source in ("auto", "local"):
        _local(settings, ref, found)
    if source in ("auto", "nats") and answers(settings.nats_url):
        with contextlib.suppress(Exception):
            asyncio.run(_nats(settings, ref, found, read=False))
    if source in ("auto", "db") and _database_configured(settings):
        _database(settings, ref, found)
    return found.where


def resolve_execution(ref: str, settings: Settings, source: str = "auto") -> tuple[str, list[str]]:
    """The one execution id `ref` names (an id or a unique prefix) and the sources holding it."""
    found = candidates(ref, settings, source)
    if ref in found:
        return ref, found[ref]
    if len(found) == 1:
        return next(iter(found.items()))
    if not found:
        looked = {
            "auto": "the local logs, JetStream and the recorder database",
            "local": "the local logs",
            "nats": f"JetStream at {settings.nats_url}",
            "db": "the recorder database",
        }[source]
        raise RbError(f"no recorded execution {ref!r} (looked in {looked})")
    raise RbError(ambiguous(ref, sorted(found)))


def ambiguous(ref: str, ids: list[str]) -> str:
    shown = ", ".join(ids[:SHOWN_CANDIDATES])
    more = f" and {len(ids) - SHOWN_CANDIDATES} more" if len(ids) > SHOWN_CANDIDATES else ""
    return f"execution id prefix {ref!r} is ambiguous: it matches {len(ids)} executions: {shown}{more}"


def load_events(ref: str, settings: Settings, source: str = "auto") -> tuple[list[Event], str]:
    """The execution's events and where they came from."""
    execution_id, sources = resolve_execution(ref, settings, source)
    for where in sources:
        events = _read(settings, execution_id, where)
        if events:
            return events, where
    raise RbError(f"execution {execution_id} has no readable events in {', '.join(sources)}")


def executions_of(settings: Settings, runbook_id: str) -> list[str]:
    """Recorded executions of a runbook: the local log's, then the recorder database's (never
    `rb test`'s scenario runs)."""
    ids = local_executions_of(settings, runbook_id)
    if _database_configured(settings):
        from rb_store.db import database_url, make_engine
        from rb_store.queries import list_executions

        engine = make_engine(database_url(settings))
        try:
            offset = 0
            while True:
                items, total = list_executions(engine, runbook_id=runbook_id, limit=500, offset=offset)
                ids += [item["id"] for item in items if item["id"] not in ids]
                offset += len(items)
                if not items or offset >= total:
                    break
        except Exception:  # no schema yet, database down: nothing recorded there
            pass
        finally:
            engine.dispose()
    return ids


def local_executions_of(settings: Settings, runbook_id: str) -> list[str]:
    store = FileEventStore(settings.events_dir)
    ids = []
    for execution_id in store.execution_ids():
        path: Path = settings.events_dir / f"{execution_id}.jsonl"
        with path.open(encoding="utf-8") as handle:
            first = handle.readline()
        if first and Event.from_json(first).data.get("runbook", {}).get("id") == runbook_id:
            ids.append(execution_id)
    return ids
