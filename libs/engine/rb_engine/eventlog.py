"""The local event log: one JSON-lines file per execution under RB_HOME/executions."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import IO

from pydantic import ValidationError

from rb_common.errors import RbError
from rb_common.events import Event
from rb_common.ports import ConcurrencyError
from rb_common.upcast import upcast

_SAFE_ID = re.compile(r"^[A-Za-z0-9_.-]+$")


class EventLogError(RbError):
    pass


class FileEventStore:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._open: dict[str, tuple[IO[str], int]] = {}

    def _path(self, execution_id: str) -> Path:
        if not _SAFE_ID.match(execution_id):
            raise EventLogError(f"invalid execution id {execution_id!r}")
        return self.directory / f"{execution_id}.jsonl"

    def append(self, event: Event) -> None:
        handle, last = self._open.get(event.execution_id, (None, 0))
        if handle is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            path = self._path(event.execution_id)
            last = len(self.read(event.execution_id)) if path.exists() else 0
            handle = path.open("a", encoding="utf-8")
        if event.seq != last + 1:
            raise ConcurrencyError(f"{event.execution_id}: expected seq {last + 1}, got {event.seq}")
        handle.write(event.to_json() + "\n")
        handle.flush()
        self._open[event.execution_id] = (handle, event.seq)

    def close(self) -> None:
        for handle, _ in self._open.values():
            handle.close()
        self._open.clear()

    def read(self, execution_id: str) -> list[Event]:
        path = self._path(execution_id)
        if not path.exists():
            return []
        events = []
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    events.append(upcast(Event.from_json(line)))  # in the current schema
                except ValidationError as exc:
                    raise EventLogError(
                        f"{path}:{number}: unreadable event: {exc.errors()[0]['msg']}"
                    ) from None
        return events

    def execution_ids(self) -> list[str]:
        if not self.directory.exists():
            return []
        files = sorted(self.directory.glob("*.jsonl"), key=os.path.getmtime)
        return [f.stem for f in files]
