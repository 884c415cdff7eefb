"""`GET /executions/{id}?wait=S`: the detail once the execution has ended, or after S seconds.

A client following an execution without SSE (k6, shell scripts, CI jobs) otherwise polls the
detail every fraction of a second, and every poll is a request, an authorization and a
projection read. Here one request waits instead: a core NATS subscription on the execution's
subject (no JetStream consumer) is opened before the first read, so a terminal event published
in between is not missed; it wakes the wait, and the projection is read again until it shows
the end (the recorder follows the stream by milliseconds; the pauses between reads double from
50 to 400 ms when it is further behind) or the time is up. The answer is the
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

from rb_api.deps import Services
from rb_api.executions import detail
from rb_api.reads import TERMINAL_STATUSES
from rb_common.events import TERMINAL_EVENTS

log = logging.getLogger(__name__)

MAX_WAIT = 30.0  # seconds a request may hold its answer
PROJECTION_RECHECK = 0.05  # first pause before reading again a projection behind a seen end
PROJECTION_RECHECK_MAX = 0.4  # the pauses double up to this (a recorder far behind, under load)
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
    loop = asyncio.get_running_loop()
    deadline = loop.time() + min(wait, MAX_WAIT)
    ended = asyncio.Event()

    async def on_message(msg: Msg) -> None:
        if _is_terminal(msg):
            ended.set()

    try:
        sub = await svc.bus.nc.subscribe(svc.bus.names.exec_subject(execution_id), cb=on_message)
    except NatsError as exc:  # no NATS: a plain read, the client polls again
        log.warning("cannot wait on %s (%s): answering at once", execution_id, exc)
        return await detail(svc, execution_id)
    pause = PROJECTION_RECHECK
    try:
        found = await detail(svc, execution_id)
        while found.get("status") not in TERMINAL_STATUSES:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            if not ended.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(ended.wait(), remaining)
            else:  # seen on the stream, not yet in the projection
                await asyncio.sleep(min(pause, remaining))
                pause = min(pause * 2, PROJECTION_RECHECK_MAX)
            found = await detail(svc, execution_id)
        return found
    finally:
        # Runs while the request is being cancelled too (client gone): shield the unsubscribe.
        with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
            await sub.unsubscribe()
