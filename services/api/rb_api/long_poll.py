"""`GET /executions/{id}?wait=S`: the detail once the execution has ended, or after S seconds.

A client following an execution without SSE (k6, shell scripts, CI jobs) otherwise polls the
detail every fraction of a second, and every poll is a request, an authorization and a
projection read. Here one request waits instead: a core NATS subscription on the execution's
subject (no JetStream consumer) is opened (and flushed to the server) before the first read, and
the stream's last event is looked at once after it, so an end published in between is not
missed; the end wakes the wait (and the projection is read every 2 s regardless, in case a
message is lost to a reconnect), and the projection's status is read again until it shows
the end (the recorder follows the stream by milliseconds; the pauses between reads double from
50 to 400 ms when it is further behind) or the time is up. Until then only the status column is
read (and the stream's last event once): the whole detail, which before the recorder has the
execution means reading its events from the stream, is read once, to answer. The answer is the
same detail a plain GET gives, finished or not; `wait=0` (the default) answers at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import anyio
import orjson
from nats.aio.msg import Msg
from nats.errors import Error as NatsError

from rb_api.dbutil import in_thread
from rb_api.deps import Services
from rb_api.executions import check_id, detail
from rb_api.reads import TERMINAL_STATUSES, projected_status
from rb_common.events import TERMINAL_EVENTS

log = logging.getLogger(__name__)

MAX_WAIT = 30.0  # seconds a request may hold its answer
PROJECTION_RECHECK = 0.05  # first pause before reading again a projection behind a seen end
PROJECTION_RECHECK_MAX = 0.4  # the pauses double up to this (a recorder far behind, under load)
SAFETY_RECHECK = 2.0  # seconds between reads while nothing has woken the request
_TERMINAL_TYPES = frozenset(t.value for t in TERMINAL_EVENTS)


def _is_terminal(msg: Msg) -> bool:
    try:
        return orjson.loads(msg.data).get("type") in _TERMINAL_TYPES
    except (orjson.JSONDecodeError, AttributeError):
        return False


async def finished_detail(svc: Services, execution_id: str, wait: float) -> dict[str, Any]:
    """The execution's detail once its status is terminal, or when `wait` seconds have passed."""
    if wait <= 0:
        return await detail(svc, execution_id)
    check_id(execution_id)  # before the id goes into a subject
    loop = asyncio.get_running_loop()
    deadline = loop.time() + min(wait, MAX_WAIT)
    ended = asyncio.Event()

    async def on_message(msg: Msg) -> None:
        if _is_terminal(msg):
            ended.set()

    sub: Any = None
    try:
        # Shielded: a request cancelled meanwhile (client gone) still gets to the unsubscribe.
        with anyio.CancelScope(shield=True):
            sub = await svc.bus.nc.subscribe(svc.bus.names.exec_subject(execution_id), cb=on_message)
        await svc.bus.nc.flush(timeout=2)  # the server has the interest before the first read
    except (NatsError, TimeoutError) as exc:  # no NATS: a plain read, the client polls again
        log.warning("cannot wait on %s (%s): answering at once", execution_id, exc)
        if sub is not None:
            await _unsubscribe(sub)
        return await detail(svc, execution_id)
    pause = PROJECTION_RECHECK
    try:
        # Until the end, only the status is read (the whole detail is read once, to answer).
        status = await in_thread(projected_status, svc.engine, execution_id)
        if status not in TERMINAL_STATUSES:
            last = await _last_type(svc, execution_id)
            if status is None and last is None and execution_id not in svc.accepted:
                # Neither projected nor on the stream: unknown (the detail answers 404), or
                # triggered a moment ago through another API process (the client polls again).
                return await detail(svc, execution_id)
            if last in _TERMINAL_TYPES:
                ended.set()  # it ended before the subscription took effect; the projection follows
        while status not in TERMINAL_STATUSES:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            if not ended.is_set():
                # Woken by the end, or every SAFETY_RECHECK seconds all the same (a message
                # lost to a reconnect must not hold the answer for the whole wait).
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(ended.wait(), min(remaining, SAFETY_RECHECK))
            else:  # seen on the stream, not yet in the projection
                await asyncio.sleep(min(pause, remaining))
                pause = min(pause * 2, PROJECTION_RECHECK_MAX)
                if pause >= PROJECTION_RECHECK_MAX:
                    # The recorder is far behind (or down): the detail folds the stream, ended.
                    found = await detail(svc, execution_id)
                    if found.get("status") in TERMINAL_STATUSES:
                        return found
            status = await in_thread(projected_status, svc.engine, execution_id)
        return await detail(svc, execution_id)
    finally:
        await _unsubscribe(sub)


async def _last_type(svc: Services, execution_id: str) -> str | None:
    """The type of the execution's last event on the stream (None: it has none, or no answer):
    one direct get, and only the type parsed (the first event holds the whole definition)."""
    names = svc.bus.names
    try:
        last = await svc.bus.js.get_last_msg(
            names.events_stream, names.exec_subject(execution_id), direct=True
        )
        found = orjson.loads(last.data or b"{}").get("type")
    except Exception:  # not there (NotFoundError), or no answer: the status re-reads cover it
        return None
    return found if isinstance(found, str) else None


async def _unsubscribe(sub: Any) -> None:
    # Runs while the request is being cancelled too (client gone): shield the unsubscribe.
    with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
        await sub.unsubscribe()
