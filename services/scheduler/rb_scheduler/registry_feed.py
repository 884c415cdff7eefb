"""The scheduler's copy of the registry, kept current by the registry's change events.

`RegistryView` holds, per runbook, the approved revision (or none) from each registry sequence on,
so an alert is matched against the registry as of its arrival (`AlertEvent.registry_seq`): an
alert that arrived after an approval sees the runbook, one that arrived after a deprecation does
not, however late the router gets to it.

`RegistryWatcher` feeds it: at start it reads the bucket stream's last sequence L, loads every
approved runbook from the database (every change up to L was committed before its put, so the
load covers them), then follows the bucket's stream from L + 1 and, for each change, reloads the
runbook it names from the database (the source of truth). A slow safety-net reload of the whole
registry catches a change whose put never reached NATS.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy
from pydantic import ValidationError
from sqlalchemy import Engine, and_, select

from rb_common.bus import Bus, patiently
from rb_common.model import Runbook
from rb_common.registry_events import decode, ensure_bucket
from rb_store.registry import Registered, approved
from rb_store.tables import runbook_versions, runbooks

log = logging.getLogger(__name__)

# How long superseded states are kept for alerts that arrived while they were current.
KEEP_SECONDS = 3600.0
KEEP_VERSIONS = 32


def approved_one(engine: Engine, runbook_id: str) -> Registered | None:
    """The runbook's current revision if it is APPROVED (and still loads), else None."""
    query = (
        select(runbooks.c.id, runbooks.c.current_revision, runbook_versions.c.definition)
        .join(
            runbook_versions,
            and_(
                runbook_versions.c.runbook_id == runbooks.c.id,
                runbook_versions.c.revision == runbooks.c.current_revision,
            ),
        )
        .where(and_(runbooks.c.id == runbook_id, runbooks.c.status == "APPROVED"))
    )
    with engine.connect() as connection:
        row = connection.execute(query).first()
    if row is None:
        return None
    try:
        return Registered(Runbook.model_validate(row.definition), row.current_revision)
    except ValidationError as exc:
        log.error(
            "runbook %s revision %s no longer loads: %s", row.id, row.current_revision, exc.errors()[0]["msg"]
        )
        return None


def approved_revision(engine: Engine, runbook_id: str, revision: int) -> Registered | None:
    """That revision of the runbook (revisions never change once written), or None."""
    query = select(runbook_versions.c.definition).where(
        and_(runbook_versions.c.runbook_id == runbook_id, runbook_versions.c.revision == revision)
    )
    with engine.connect() as connection:
        row = connection.execute(query).first()
    if row is None:
        return None
    try:
        return Registered(Runbook.model_validate(row.definition), revision)
    except ValidationError as exc:
        log.error("runbook %s revision %s no longer loads: %s", runbook_id, revision, exc.errors()[0]["msg"])
        return None


def state_of_change(engine: Engine, runbook_id: str, value: dict[str, Any]) -> Registered | None:
    """The runbook as the change left it, not as the database has it now: a watcher that
    lags behind must not apply a later state under an earlier sequence (an approval followed
    by a deprecation would otherwise never have been approved). Changes that do not say
    (deletions, schedule pauses, hand-made puts) read the current state."""
    status, revision = value.get("status"), value.get("revision")
    if value.get("change") == "deleted":
        return None
    if isinstance(status, str) and isinstance(revision, int):
        return approved_revision(engine, runbook_id, revision) if status == "APPROVED" else None
    return approved_one(engine, runbook_id)


def _revision(entry: Registered | None) -> int | None:
    return None if entry is None else entry.revision


@dataclass
class _History:
    seqs: list[int] = field(default_factory=list)
    states: list[tuple[float, Registered | None]] = field(default_factory=list)

    def add(self, seq: int, entry: Registered | None) -> None:
        if self.seqs and seq < self.seqs[-1]:
            seq = self.seqs[-1]  # never rewrite the past
        if self.seqs and self.seqs[-1] == seq:
            self.states[-1] = (time.monotonic(), entry)
        else:
            self.seqs.append(seq)
            self.states.append((time.monotonic(), entry))
        self._prune()

    def _prune(self) -> None:
        horizon = time.monotonic() - KEEP_SECONDS
        drop = 0
        # Keep the newest always; drop states superseded long ago or beyond the count.
        while drop < len(self.seqs) - 1 and (
            len(self.seqs) - drop > KEEP_VERSIONS or self.states[drop + 1][0] < horizon
        ):
            drop += 1
        if drop:
            del self.seqs[:drop]
            del self.states[:drop]

    @property
    def latest(self) -> Registered | None:
        return self.states[-1][1]

    def at(self, seq: int) -> Registered | None:
        """The state current at `seq`; the oldest one kept for anything older."""
        index = bisect.bisect_right(self.seqs, seq) - 1
        return self.states[max(index, 0)][1]


class RegistryView:
    """Approved runbooks by registry sequence; `applied` is the last sequence taken in."""

    def __init__(self) -> None:
        self.histories: dict[str, _History] = {}
        self.applied = 0
        self.loaded = 0  # the sequence of the first full load
        self._advanced = asyncio.Condition()
        self._suspects: dict[str, int | None] = {}

    def load(self, entries: list[Registered], seq: int) -> None:
        """The whole registry as it stands at `seq` (start-up)."""
        if not self.histories:
            self.loaded = seq
        for entry in entries:
            self._history(entry.runbook.id).add(seq, entry)
        wanted = {entry.runbook.id for entry in entries}
        for runbook_id, history in self.histories.items():
            if runbook_id not in wanted and history.latest is not None:
                history.add(seq, None)
        self.applied = max(self.applied, seq)

    def _history(self, runbook_id: str) -> _History:
        return self.histories.setdefault(runbook_id, _History())

    def apply(self, runbook_id: str, entry: Registered | None, seq: int) -> None:
        if runbook_id not in self.histories:
            # Unknown until now: it was not approved at the start-up load.
            self._history(runbook_id).add(self.loaded, None)
        self._history(runbook_id).add(seq, entry)
        self._suspects.pop(runbook_id, None)
        self.applied = max(self.applied, seq)

    async def advanced(self) -> None:
        """Wake whoever waits for a sequence (call after `apply`/`load`)."""
        async with self._advanced:
            self._advanced.notify_all()

    def current(self) -> list[Registered]:
        return sorted(
            (h.latest for h in self.histories.values() if h.latest is not None), key=lambda r: r.runbook.id
        )

    def as_of(self, seq: int | None) -> list[Registered]:
        """The approved runbooks as they stood at registry sequence `seq` (None: now)."""
        if seq is None:
            return self.current()
        found = (h.at(seq) for h in self.histories.values())
        return sorted((r for r in found if r is not None), key=lambda r: r.runbook.id)

    async def wait_for(self, seq: int | None, timeout: float) -> bool:
        """Until every change up to `seq` is applied; False when `timeout` ran out first."""
        if seq is None or self.applied >= seq:
            return True
        try:
            async with asyncio.timeout(timeout), self._advanced:
                await self._advanced.wait_for(lambda: self.applied >= seq)
        except TimeoutError:
            return False
        return True

    def reconcile(self, entries: list[Registered]) -> list[str]:
        """The safety net: a full reload that differs from the view on two reloads in a row
        (a change whose event never came; one that is merely in flight is applied before the
        next reload) is taken in at the applied sequence. Returns the runbooks corrected."""
        loaded: dict[str, Registered | None] = {entry.runbook.id: entry for entry in entries}
        for runbook_id in self.histories:
            loaded.setdefault(runbook_id, None)
        corrected = []
        suspects: dict[str, int | None] = {}
        for runbook_id, entry in loaded.items():
            history = self.histories.get(runbook_id)
            have = _revision(history.latest) if history else None
            if _revision(entry) == have:
                continue
            if runbook_id in self._suspects and self._suspects[runbook_id] == _revision(entry):
                self.apply(runbook_id, entry, self.applied)
                corrected.append(runbook_id)
            else:
                suspects[runbook_id] = _revision(entry)
        self._suspects = suspects
        return corrected


class RegistryWatcher:
    """Follows the registry bucket's stream into a RegistryView; `on_change` runs after each
    applied change (the scheduler re-syncs its cron jobs there)."""

    def __init__(
        self,
        bus: Bus,
        engine: Engine,
        view: RegistryView,
        on_change: Callable[[str], Any] | None = None,
    ) -> None:
        self.bus = bus
        self.engine = engine
        self.view = view
        self.on_change = on_change
        self._sub: Any = None
        self._prefix = bus.names.registry_key_subject("")

    async def start(self) -> None:
        await patiently(lambda: ensure_bucket(self.bus.js, self.bus.names), "registry bucket")
        info = await patiently(
            lambda: self.bus.js.stream_info(self.bus.names.registry_stream), "registry stream"
        )
        start_seq = int(info.state.last_seq or 0)
        self.view.load(await asyncio.to_thread(approved, self.engine), start_seq)
        await self.view.advanced()
        self._sub = await patiently(
            lambda: self.bus.js.subscribe(  # a config of its own each try (subscribe fills it in)
                self.bus.names.all_registry_keys,
                stream=self.bus.names.registry_stream,
                config=ConsumerConfig(
                    deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start_seq + 1
                ),
                ordered_consumer=True,
                cb=self._on_message,
            ),
            "registry changes",
        )
        log.info("following registry changes from sequence %d", start_seq + 1)

    async def stop(self) -> None:
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
            except Exception:
                log.debug("unsubscribe failed", exc_info=True)
            self._sub = None

    async def _on_message(self, msg: Msg) -> None:
        seq = msg.metadata.sequence.stream
        runbook_id = msg.subject[len(self._prefix) :] if msg.subject.startswith(self._prefix) else ""
        value = decode(msg.data)
        change = value.get("change") or (msg.headers or {}).get("KV-Operation", "?")
        while True:
            try:
                entry = await asyncio.to_thread(state_of_change, self.engine, runbook_id, value)
                break
            except Exception:
                # Never skip a change: the sequence only advances once it is applied.
                log.exception("reloading runbook %s after %s failed; retrying", runbook_id, change)
                await asyncio.sleep(1.0)
        self.view.apply(runbook_id, entry, seq)
        await self.view.advanced()
        log.info(
            "registry #%d: %s %s -> %s",
            seq,
            runbook_id,
            change,
            f"approved revision {entry.revision}" if entry else "not approved",
        )
        if self.on_change is not None:
            try:
                result = self.on_change(runbook_id)
                if asyncio.iscoroutine(result):
                    await result
            except Exception:
                log.exception("applying the change of %s failed", runbook_id)
