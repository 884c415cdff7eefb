"""Put AlertEvents on `rb.alert.<source>` (stream RB_TRIGGERS), deduplicated by JetStream.

Each event is published with `Nats-Msg-Id = <source>:<dedupe_id>` (generic webhooks add the
runbook id: the same event id sent to two runbooks is two events), so a notification delivered
again inside the stream's duplicate window (1 h) is acknowledged as a duplicate and stored once.
A sender that retries after a 503 therefore never causes a second trigger.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from rb_api.problems import ProblemError
from rb_common.bus import Bus
from rb_common.messages import AlertEvent

log = logging.getLogger("rb_api")

PUBLISH_TIMEOUT = 5.0
MAX_IN_FLIGHT = 64


def msg_id(event: AlertEvent) -> str:
    if event.runbook_id is not None:
        return f"{event.source}:{event.runbook_id}:{event.dedupe_id}"
    return f"{event.source}:{event.dedupe_id}"


@dataclass
class Outcome:
    trigger_ids: list[str] = field(default_factory=list)  # stored now
    duplicate_ids: list[str] = field(default_factory=list)  # already on the stream

    def body(self) -> dict[str, Any]:
        """The 202 answer of the trigger endpoints."""
        return {
            "accepted": len(self.trigger_ids),
            "duplicates": len(self.duplicate_ids),
            "trigger_ids": self.trigger_ids,
            "duplicate_ids": self.duplicate_ids,
        }


async def publish_alerts(bus: Bus, events: list[AlertEvent]) -> Outcome:
    """Publish every event (concurrently, bounded); 503 problem if NATS does not store one."""
    gate = asyncio.Semaphore(MAX_IN_FLIGHT)

    async def one(event: AlertEvent) -> bool:
        async with gate:
            ack = await bus.js.publish(
                bus.names.alert_subject(event.source),
                event.encode(),
                headers={"Nats-Msg-Id": msg_id(event)},
                stream=bus.names.triggers_stream,
                timeout=PUBLISH_TIMEOUT,
            )
        return bool(ack.duplicate)

    results = await asyncio.gather(*(one(event) for event in events), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, Exception):
            raise result  # cancellation and the like: not a bus failure
    failures = [r for r in results if isinstance(r, Exception)]
    if failures:
        first = failures[0]
        log.warning("cannot publish %d of %d alerts: %s", len(failures), len(events), first)
        raise ProblemError(
            503,
            f"{len(failures)} of {len(events)} alerts could not be published to NATS "
            f"({type(first).__name__}); retry: alerts already stored are deduplicated",
            slug="bus-unavailable",
            title="Message bus unavailable",
            headers={"Retry-After": "1"},
        )
    outcome = Outcome()
    for event, duplicate in zip(events, results, strict=True):
        (outcome.duplicate_ids if duplicate else outcome.trigger_ids).append(event.dedupe_id)
    return outcome
