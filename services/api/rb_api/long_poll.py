"""`GET /executions/{id}?wait=S`: the detail once the execution has ended, or after S seconds.

A client following an execution without SSE (k6, shell scripts, CI jobs) otherwise polls the
detail every fraction of a second, and every poll is a request, an authorization and a
projection read. Here one request waits instead, on the recorder's announcement that the
execution's end is in its tables (rb_api.ended: one subscription per API process, so a request
opens none of its own). The request registers its wait before it reads the projected status,
so an end committed in between is not missed; an execution this process created a moment ago
(rb_api.accepted) whose end has not been announced has nothing to read yet, and is not read.
The reads go through the long polls' lane of threads (svc.poll_reads) and are given up when the
wait is up, so a queue behind a slow database does not hold an answer past its wait.
Then it reads nothing until it is woken, when it reads the detail to answer with, or every
`SAFETY_RECHECK` seconds (give or take a quarter, so polls started together do not read
together) all the same: an announcement lost to a reconnect, or a recorder that is down (when
the projection has no row of the execution, the stream's last event says whether it has ended,
and the detail then folds the stream; a row the recorder left behind when it stopped is what
the answer shows). The answer is the same detail a plain GET gives, finished or not. `wait=0`
(the default) answers at once.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from typing import Any, TypeVar

import orjson
from sqlalchemy import Engine

from rb_api.deps import Services
from rb_api.executions import check_id, detail
from rb_api.reads import TERMINAL_STATUSES, projected_status
from rb_common.events import TERMINAL_EVENTS
from rb_store.lineage import detail as lineage_detail

log = logging.getLogger(__name__)

MAX_WAIT = 30.0  # seconds a request may hold its answer
SAFETY_RECHECK = 2.0  # seconds between reads while nothing has woken the request
T = TypeVar("T")
_TERMINAL_TYPES = frozenset(t.value for t in TERMINAL_EVENTS)


async def finished_detail(svc: Services, execution_id: str, wait: float) -> dict[str, Any]:
    """The execution's detail once its status is terminal, or when `wait` seconds have passed."""
    if wait <= 0 or not svc.ended.listening:  # not listening: no NATS at start, answer at once
        return await detail(svc, execution_id)
    check_id(execution_id)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + min(wait, MAX_WAIT)
    with svc.ended.watch(execution_id) as ended:
        if svc.accepted.created_here(execution_id) and not svc.ended.announced_lately(execution_id):
            # Created here a moment ago and no end announced since: nothing to read yet.
            status: str | None = None
        else:
            try:
                status = await _read(svc, projected_status, execution_id, deadline - loop.time())
            except TimeoutError:
                return await detail(svc, execution_id)
            if status is None and execution_id not in svc.accepted:
                # Not projected, and not accepted here a moment ago: on the stream only (the
                # recorder is behind or down), triggered through another API process, or unknown.
                last = await _last_type(svc, execution_id)
                if last is None or last in _TERMINAL_TYPES:
                    return await detail(svc, execution_id)  # 404, or the stream's fold of the end
        while status not in TERMINAL_STATUSES:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                await asyncio.wait_for(ended.wait(), min(remaining, _recheck()))
                woken = True
            except TimeoutError:
                woken = False
            try:
                if not woken:
                    status = await _read(svc, projected_status, execution_id, deadline - loop.time())
                else:
                    # Announced: the end is in the recorder's tables, so the answer is read at once.
                    ended.clear()
                    found = await _read(svc, lineage_detail, execution_id, deadline - loop.time())
                    if found is not None and found.get("status") in TERMINAL_STATUSES:
                        return found
                    status = found.get("status") if found is not None else None
            except TimeoutError:
                break  # the wait is up while the read waited for its lane: answer as a plain GET
            remaining = deadline - loop.time()
            if (
                status is None
                and remaining > 0
                and await _last_type(svc, execution_id, remaining) in _TERMINAL_TYPES
            ):
                break  # ended, and the recorder has no row of it: the detail folds the stream
        return await detail(svc, execution_id)


async def _read(svc: Services, read: Callable[[Engine, str], T], execution_id: str, within: float) -> T:
    """`read` in the long polls' lane (svc.poll_reads), given up (TimeoutError) if it has not
    finished within `within` seconds: a poll whose reads queue behind a slow database still
    answers when its wait is up (a read already running is waited for)."""
    if within <= 0:
        raise TimeoutError
    return await asyncio.wait_for(svc.poll_reads.run(read, svc.engine, execution_id), within)


def _recheck() -> float:
    """Seconds until the next read while nothing has woken the request: `SAFETY_RECHECK`, give or
    take a quarter, so the long polls a burst of executes started do not read all at once."""
    return SAFETY_RECHECK * random.uniform(0.75, 1.25)


async def _last_type(svc: Services, execution_id: str, within: float | None = None) -> str | None:
    """The type of the execution's last event on the stream (None: it has none, or no answer
    within `within` seconds): one direct get, and only the type parsed (the first event holds
    the whole definition)."""
    names = svc.bus.names
    try:
        last = await asyncio.wait_for(
            svc.bus.js.get_last_msg(names.events_stream, names.exec_subject(execution_id), direct=True),
            within,
        )
        found = orjson.loads(last.data or b"{}").get("type")
    except Exception:  # not there (NotFoundError), or no answer: the status re-reads cover it
        return None
    return found if isinstance(found, str) else None
