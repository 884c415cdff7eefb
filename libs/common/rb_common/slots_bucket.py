"""The slot table (rb_common.slots) in its KV bucket `<NS>_ADMISSION`, key `table`.

Every change is a compare-and-set on the key's revision, retried on conflict, so executors on
several replicas share one count. Changes within one process go through one writer: those asked
for while a write is under way are applied together, in order, in the next read and write. `queue_depth` is the API's cheap read: one KV get.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, KeyWrongLastSequenceError, NotFoundError
from nats.js.kv import KeyValue

from rb_common.bus import Bus, Names
from rb_common.slots import Slot, Table, Verdict, admit, release

KEY = "table"
log = logging.getLogger(__name__)
T = TypeVar("T")


async def ensure_slots_bucket(js: JetStreamContext, names: Names) -> KeyValue:
    try:
        return await js.key_value(names.admission_bucket)
    except (BucketNotFoundError, NotFoundError):
        pass
    return await js.create_key_value(
        KeyValueConfig(
            bucket=names.admission_bucket,
            description="rb admission: running and queued executions (rb_common.slots)",
            history=1,
            storage=StorageType.FILE,
            replicas=names.replicas,
        )
    )


async def read_table(kv: KeyValue) -> tuple[Table, int]:
    """The table and its revision (0: no table yet)."""
    try:
        entry = await kv.get(KEY)
    except KeyNotFoundError:
        return Table(), 0
    return Table.decode(entry.value), int(entry.revision or 0)


async def queue_depth(bus: Bus) -> int:
    """How many executions wait for a slot (0 when there is no table yet): one get of the
    key's last value from the bucket's stream."""
    bucket = bus.names.admission_bucket
    try:
        last = await bus.js.get_last_msg(f"KV_{bucket}", f"$KV.{bucket}.{KEY}")
    except NotFoundError:
        return 0
    return len(Table.decode(last.data).queue)


class Slots:
    """This process's handle on the shared table, with the executor's limits."""

    def __init__(
        self,
        bus: Bus,
        *,
        max_running: int,
        max_queued: int,
        observe: Callable[[Table], None] | None = None,
    ) -> None:
        self.bus = bus
        self.max_running = max_running
        self.max_queued = max_queued
        # Called with every table this process reads or stores (the executor's gauges).
        self.observe = observe
        self._kv: KeyValue | None = None
        self._pending: list[tuple[Callable[[Table], Any], asyncio.Future[Any]]] = []
        self._writer: asyncio.Future[None] | None = None

    async def kv(self) -> KeyValue:
        if self._kv is None:
            self._kv = await ensure_slots_bucket(self.bus.js, self.bus.names)
        return self._kv

    async def change(self, fn: Callable[[Table], T]) -> T:
        """Apply `fn` to the current table and store the result, compare-and-set. Changes asked
        for while a write is under way go together in the next one (one read and one write for
        a burst of triggers, in the order they were asked for), so a release never waits behind
        hundreds of admissions one round trip each."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append((fn, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.ensure_future(self._write())
        return await asyncio.shield(future)

    async def _write(self) -> None:
        kv = await self.kv()
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                results, table = await self._store(kv, [fn for fn, _ in batch])
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            self._seen(table)
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)

    def _seen(self, table: Table) -> None:
        if self.observe is not None:
            try:
                self.observe(table)
            except Exception:  # an observer never stops the writer
                log.exception("slot table observer failed")

    @staticmethod
    async def _store(kv: KeyValue, fns: list[Callable[[Table], Any]]) -> tuple[list[Any], Table]:
        """The functions' results and the table as stored."""
        while True:
            table, revision = await read_table(kv)
            before = table.encode()
            results = [fn(table) for fn in fns]
            after = table.encode()
            if after == before:
                return results, table
            try:
                if revision == 0:
                    await kv.create(KEY, after)
                else:
                    await kv.update(KEY, after, last=revision)
            except KeyWrongLastSequenceError:
                continue  # another executor changed it first: judge again on its table
            return results, table

    async def table(self) -> Table:
        table, _ = await read_table(await self.kv())
        self._seen(table)
        return table

    async def admit(self, slot: Slot, on_limit: str) -> Verdict:
        return await self.change(
            lambda table: admit(
                table, slot, on_limit, max_running=self.max_running, max_queued=self.max_queued
            )
        )

    async def release(self, execution_id: str) -> list[str]:
        return await self.change(lambda table: release(table, execution_id, self.max_running))
