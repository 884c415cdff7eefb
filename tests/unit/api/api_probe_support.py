"""Helpers the API tests import by name (a conftest is not importable by name when several
test directories hold one): a probe of what reached a subject, the key factory's type."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

from rb_common.bus import DEFAULT_NAMES, Bus
from rb_common.memory_bus import MemoryJetStream

KeyFactory = Callable[..., Awaitable[str]]


class SubjectProbe:
    """Reads what reached one subject of a stream."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.made: list[tuple[str, str, str]] = []  # (stream, consumer, subject)

    async def take(
        self, stream: str, subject: str, want: int = 1, timeout: float = 5.0
    ) -> tuple[list[Any], int]:
        """(messages, how many there were); waits up to `timeout` for `want` messages."""
        assert isinstance(self.bus.js, MemoryJetStream)
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            msgs = self.bus.js.messages(stream, subject)
            if len(msgs) >= want or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.02)
        self.made.append((stream, "", subject))
        return msgs, len(msgs)

    async def count(self, stream: str, subject: str) -> int:
        info = await self.bus.js.stream_info(stream, subjects_filter=subject)
        return (info.state.subjects or {}).get(subject, 0)

    async def triggers(self, runbook_id: str, want: int = 1) -> tuple[list[dict[str, Any]], int]:
        msgs, pending = await self.take(
            DEFAULT_NAMES.triggers_stream, DEFAULT_NAMES.trigger_subject(runbook_id), want
        )
        return [{"headers": m.headers or {}, "body": json.loads(m.data)} for m in msgs], pending

    async def commands(self, execution_id: str, want: int = 1) -> tuple[list[dict[str, Any]], int]:
        msgs, pending = await self.take(
            DEFAULT_NAMES.inbox_stream, DEFAULT_NAMES.control_subject(execution_id), want
        )
        return [json.loads(m.data) for m in msgs], pending

    async def cleanup(self) -> None:
        for stream, _, subject in self.made:
            with contextlib.suppress(Exception):
                await self.bus.js.purge_stream(stream, subject=subject)
