"""What a service's readiness depends on: named checks it registers as it comes up.

A service is ready once it has registered at least one check and every check passes; before
that (still migrating, still connecting) it is alive but not ready.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable

from nats.aio.client import Client
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.errors import ServiceUnavailableError

from rb_common.bus import Bus

Check = Callable[[], bool | Awaitable[bool]]


class Health:
    def __init__(self, timeout: float = 2.0) -> None:
        self.timeout = timeout
        self.checks: dict[str, Check] = {}
        # A check that has not answered is not started again until it does: a hung database
        # must not pile up a blocked thread per probe.
        self._pending: dict[str, asyncio.Future[bool]] = {}

    def add(self, name: str, check: Check) -> None:
        self.checks[name] = check

    async def status(self) -> tuple[bool, dict[str, str]]:
        """Whether the service is ready, and each check's result ("ok" or why not)."""
        results: dict[str, str] = {}
        for name, check in list(self.checks.items()):
            try:
                results[name] = "ok" if await self._run(name, check) else "failing"
            except TimeoutError:
                results[name] = f"no answer within {self.timeout:g} s"
            except Exception as exc:
                results[name] = f"{type(exc).__name__}: {exc}"
        ready = bool(results) and all(value == "ok" for value in results.values())
        return ready, results

    async def _run(self, name: str, check: Check) -> bool:
        pending = self._pending.get(name)
        if pending is None:
            outcome = check()
            if not inspect.isawaitable(outcome):
                return outcome
            pending = self._pending[name] = asyncio.ensure_future(outcome)
        await asyncio.wait([pending], timeout=self.timeout)
        if not pending.done():
            raise TimeoutError
        del self._pending[name]
        return pending.result()


async def nats_answers(nc: Client, timeout: float = 2.0) -> bool:
    """Connected, and the server answers a round trip."""
    if not nc.is_connected:
        return False
    await nc.flush(timeout=max(1, round(timeout)))
    return True


class JetStreamUnavailable(Exception):
    """JetStream answered, but cannot serve the events stream (no leader: a lost quorum)."""


async def jetstream_answers(js: JetStreamContext, stream: str) -> bool:
    """JetStream serves `stream`: its info comes back (the cluster has a meta leader) and, on a
    cluster, names the stream's leader. Raises with the reason otherwise (readiness shows it)."""
    try:
        info = await js.stream_info(stream)
    except NatsTimeout as exc:
        raise JetStreamUnavailable(f"no answer about {stream} (no JetStream meta leader?)") from exc
    except ServiceUnavailableError as exc:
        raise JetStreamUnavailable(f"JetStream unavailable ({exc.description or 'no quorum'})") from exc
    cluster = getattr(info, "cluster", None)  # None: a single server
    if cluster is not None and not cluster.leader:
        raise JetStreamUnavailable(f"{stream} has no leader (lost quorum)")
    return True


def watch_bus(health: Health, bus: Bus) -> None:
    """A service's readiness on the bus: NATS answers, and JetStream serves the events stream."""
    health.add("nats", lambda: nats_answers(bus.nc))
    health.add("jetstream", lambda: jetstream_answers(bus.js, bus.names.events_stream))
