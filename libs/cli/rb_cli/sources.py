"""Where a recorded execution is read from: the JetStream subject, else the recorder's events
table, else the local log (DESIGN.md: replay re-consumes the recorded stream)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from rb_cli.resolve import find_execution
from rb_cli.services import answers
from rb_common.errors import RbError
from rb_common.events import Event
from rb_common.settings import Settings
from rb_engine.eventlog import FileEventStore


async def _from_nats(url: str, namespace: str, execution_id: str) -> list[Event]:
    from rb_common.bus import connect, read_execution

    bus = await connect(url, namespace=namespace, name="rb-cli", connect_timeout=2)
    try:
        return [event for event, _ in await read_execution(bus, execution_id, timeout=5)]
    finally:
        await bus.close()


def _from_database(settings: Settings, execution_id: str) -> list[Event]:
    if not settings.database_url and not (settings.home / "rb.db").exists():
        return []
    from rb_store.db import database_url, make_engine
    from rb_store.store import SqlEventStore

    engine = make_engine(database_url(settings))
    try:
        return SqlEventStore(engine).read(execution_id)
    except Exception:  # no schema yet, database down: this source simply has nothing
        return []
    finally:
        engine.dispose()


def load_events(ref: str, settings: Settings, source: str = "auto") -> tuple[list[Event], str]:
    """The execution's events and where they came from."""
    local = FileEventStore(settings.events_dir)
    if source in ("auto", "local"):
        try:
            events = find_execution(local, ref)
            return events, f"local log {settings.events_dir}"
        except RbError:
            if source == "local":
                raise
    if source in ("auto", "nats") and answers(settings.nats_url):
        with contextlib.suppress(Exception):
            events = asyncio.run(_from_nats(settings.nats_url, settings.namespace, ref))
            if events:
                return events, f"JetStream {settings.nats_url}"
    if source in ("auto", "db"):
        events = _from_database(settings, ref)
        if events:
            return events, "recorder database"
    raise RbError(
        f"no recorded execution {ref!r} (looked in the local log"
        f"{', JetStream' if source in ('auto', 'nats') else ''}"
        f"{', the recorder database' if source in ('auto', 'db') else ''})"
    )


def executions_of(settings: Settings, runbook_id: str) -> list[str]:
    """Recorded executions of a runbook: the local log's, then the recorder database's."""
    ids = local_executions_of(settings, runbook_id)
    if settings.database_url or (settings.home / "rb.db").exists():
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
