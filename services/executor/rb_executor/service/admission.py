"""Admission: the executor's own check, when a run starts, that the revision a trigger names is
the runbook's APPROVED revision as of now.

Every door (REST, GraphQL, cron, alerts, webhooks) checks before it publishes; this check is for
everything that reaches `rb.trigger.*` anyway (a stale request, a registry change in between, a
message published straight onto the bus). It reads the registry's KV bucket value for the
runbook (`{change, revision, status, ...}`, rb_common.registry_events) for every trigger, in a
read that starts after the trigger has arrived: nothing is cached. Triggers of one runbook that
arrive while a read of it is under way share the next read (`Reads`): a burst of triggers costs
a few round trips, not one each, and each trigger is still judged on the registry as of after
its arrival. No entry means no approval: refused.

A refused start is recorded, not dropped: `execution.requested` and then `execution.aborted`
with the reason and `refused: true`. Replay takes such an abort as a fact (rb_engine.replay):
decide() does not make it.

Then the limits (rb_common.slots, shared by every executor through its KV bucket): a start over
a limit is recorded as `execution.requested` + `execution.queued` (it stays QUEUED) and gets
`execution.dequeued` when a slot frees; over the queue's bound, or over its runbook's limit
with `on_limit: reject`, it is refused as above.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from pydantic import ValidationError

from rb_common.bus import Bus
from rb_common.events import EventType
from rb_common.messages import TriggerRequest
from rb_common.model import Runbook
from rb_common.params import env_names, pick_env
from rb_common.registry_events import read
from rb_common.slots import Slot, Verdict
from rb_engine.coordinator import ExecutionState
from rb_engine.coordinator import state as st
from rb_engine.coordinator.applier import EXECUTOR, Fact, requested

APPROVED = "APPROVED"


def _named(request: TriggerRequest) -> tuple[str | None, Any]:
    """(runbook id, revision) the request names."""
    data = request.data
    runbook = data.get("runbook")
    runbook_id = runbook.get("id") if isinstance(runbook, dict) else None
    trigger = data.get("trigger")
    revision = trigger.get("revision") if isinstance(trigger, dict) else None
    return (runbook_id if isinstance(runbook_id, str) else None), revision


def judge(runbook_id: str | None, revision: Any, entry: dict[str, Any] | None) -> str | None:
    """Why the run may not start (None: it may)."""
    if runbook_id is None:
        return "the request names no runbook"
    if not isinstance(revision, int) or isinstance(revision, bool):
        return f"the request names no revision of {runbook_id}: only an APPROVED revision runs"
    if entry is None:
        return f"revision {revision} of {runbook_id} is not APPROVED (the registry has no entry for {runbook_id})"
    if entry.get("change") == "deleted":
        return f"revision {revision} of {runbook_id} is not APPROVED ({runbook_id} was deleted)"
    status, current = entry.get("status"), entry.get("revision")
    if not isinstance(status, str) or not isinstance(current, int):
        return f"revision {revision} of {runbook_id} is not APPROVED (the registry does not say its status)"
    if current != revision:
        return (
            f"revision {revision} of {runbook_id} is not APPROVED "
            f"(revision {current} is current and {status})"
        )
    if status != APPROVED:
        return f"revision {revision} of {runbook_id} is not APPROVED ({status})"
    return None


Entry = dict[str, Any] | None


class Reads:
    """Reads of runbooks' registry entries, each shared by the callers that asked for it before
    it started. A caller that asks while a read of the same runbook is under way waits for the
    next one, which starts once that read is done: what a caller gets was always read after it
    asked, as if it had read alone. Errors go to every caller of the read."""

    def __init__(self, read_entry: Callable[[str], Awaitable[Entry]]) -> None:
        self._read = read_entry
        self._next: dict[str, asyncio.Future[Entry]] = {}  # not started yet: joinable
        self._serving: dict[str, asyncio.Task[None]] = {}  # the reader of each runbook

    async def get(self, runbook_id: str) -> Entry:
        upcoming = self._next.get(runbook_id)
        if upcoming is None:
            upcoming = self._next[runbook_id] = asyncio.get_running_loop().create_future()
            if runbook_id not in self._serving:
                self._serving[runbook_id] = asyncio.ensure_future(self._serve(runbook_id))
        return await asyncio.shield(upcoming)

    async def _serve(self, runbook_id: str) -> None:
        try:
            while (upcoming := self._next.pop(runbook_id, None)) is not None:
                try:
                    entry = await self._read(runbook_id)
                except asyncio.CancelledError:
                    upcoming.cancel()
                    raise
                except Exception as exc:
                    upcoming.set_exception(exc)
                    upcoming.exception()  # retrieved: a caller that was cancelled meanwhile is no error
                else:
                    upcoming.set_result(entry)
        finally:
            del self._serving[runbook_id]
            waiting = self._next.pop(runbook_id, None)  # only if this reader was cancelled
            if waiting is not None:
                waiting.cancel()


async def refusal(bus: Bus, request: TriggerRequest, reads: Reads | None = None) -> str | None:
    """Why this trigger may not start a run, as of now (None: it may)."""
    runbook_id, revision = _named(request)
    entry = None
    if runbook_id is not None:
        entry = await (reads.get(runbook_id) if reads is not None else read(bus, runbook_id))
    return judge(runbook_id, revision, entry)


def slot(request: TriggerRequest, now: float) -> tuple[Slot, str]:
    """The request's place in the slot table, and its runbook's `on_limit`."""
    runbook = request.data.get("runbook")
    runbook = runbook if isinstance(runbook, dict) else {}
    limits = runbook.get("concurrency")
    limits = limits if isinstance(limits, dict) else {}
    limit = limits.get("limit")
    on_limit = limits.get("on_limit")
    return (
        Slot(
            request.execution_id,
            str(runbook.get("id", "")),
            limit if isinstance(limit, int) and not isinstance(limit, bool) and limit >= 1 else None,
            now,
            child=isinstance(request.data.get("parent"), dict),
        ),
        on_limit if isinstance(on_limit, str) else "queue",
    )


def admitted(
    state: ExecutionState, request: TriggerRequest, refused: str | None, verdict: Verdict | None = None
) -> list[Fact]:
    """The facts of a start request: `execution.requested`, then `execution.aborted` when it
    was refused (by the registry or the limits) or `execution.queued` when it waits for a slot;
    nothing for an execution that exists already."""
    facts = requested(state, with_env(request.data), request.actor)
    if facts and refused is None and verdict is not None and verdict.outcome == "refuse":
        refused = verdict.reason
    if facts and refused is not None:
        facts.append(Fact(EventType.EXECUTION_ABORTED, {"reason": refused, "refused": True}, EXECUTOR))
    elif facts and verdict is not None and verdict.outcome == "queue":
        data = {"reason": verdict.reason, **({"limit": verdict.limit} if verdict.limit else {})}
        facts.append(Fact(EventType.EXECUTION_QUEUED, data, EXECUTOR))
    return facts


def refusal_kind(refused: str | None, verdict: Verdict | None) -> str | None:
    """The metrics' reason for a refused start (rb_admission_refused_total), None if it was not
    refused: `not_approved` by the registry check, `runbook_limit` (on_limit: reject) or
    `queue_full` by the slot table."""
    if refused is not None:
        return "not_approved"
    if verdict is None or verdict.outcome != "refuse":
        return None
    return "runbook_limit" if verdict.limit == "runbook" else "queue_full"


def runbook_of(request: TriggerRequest) -> str:
    return _named(request)[0] or ""


def dequeued(state: ExecutionState) -> list[Fact]:
    """A slot is free for it: news only while the execution waits QUEUED."""
    if state.status != st.QUEUED or not state.held:
        return []
    return [Fact(EventType.EXECUTION_DEQUEUED, {}, EXECUTOR)]


def with_env(data: dict[str, Any]) -> dict[str, Any]:
    """A trigger from the API, the scheduler or the router carries no environment: the executor
    that starts the run snapshots the variables the runbook reads (`env.X`, bare `${X}`) from
    its own environment, as `rb run` does, into `execution.requested`; the run and its replays
    read them from there."""
    if data.get("env") or not isinstance(data.get("runbook"), dict):
        return data
    names = _env_names(data["runbook"])
    if names is None:
        return data  # the coordinator records and refuses it as it is
    env = pick_env(names, os.environ)
    return {**data, "env": env} if env else data


ENV_NAMES_KEPT = 128  # definitions
_ENV_NAMES: dict[bytes, frozenset[str]] = {}  # by definition JSON, oldest first


def _env_names(definition: dict[str, Any]) -> frozenset[str] | None:
    """The variables a runbook definition reads; None if it is no valid runbook. Worked out once
    per definition (as the coordinator's plan is): parsing a 40-step runbook again on every
    trigger took 6.8 ms of each execution's start on a loaded 2-core machine (0.007 ms now).
    The values are read from the environment each time."""
    try:
        # Only plain JSON values make a key (as in rb_engine.coordinator.plan).
        key: bytes | None = orjson.dumps(
            definition,
            option=orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS,
            default=_refuse,
        )
    except TypeError:
        key = None
    found = _ENV_NAMES.get(key) if key is not None else None
    if found is None:
        try:
            runbook = Runbook.model_validate(definition)
        except ValidationError:
            return None
        found = frozenset(env_names(runbook))
        if key is not None:
            while len(_ENV_NAMES) >= ENV_NAMES_KEPT:
                del _ENV_NAMES[next(iter(_ENV_NAMES))]  # the oldest
            _ENV_NAMES[key] = found
    return found


def _refuse(value: Any) -> Any:
    raise TypeError(type(value).__name__)
