"""The scheduler service: cron schedules and alert routing, the triggers nobody types.

Both turn into TriggerRequests on `rb.trigger.<runbook>` with deterministic execution ids, so
replicas of this service, redelivered alerts and repeated notifications never start a second
execution for the same fire time or alert.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from typing import Any

from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from pydantic import ValidationError
from sqlalchemy import Engine

from rb_common import logs, tracing
from rb_common.bus import Bus, connect, last_event
from rb_common.consumers import consume_push, durable_config
from rb_common.errors import RbError
from rb_common.health import Health, watch_bus
from rb_common.messages import AlertEvent, TriggerRequest
from rb_common.model import Runbook, Trigger
from rb_common.params import resolve_params
from rb_common.routing import route
from rb_common.settings import Settings
from rb_engine.runner import RunRequest
from rb_scheduler import metrics
from rb_scheduler.alert_log import Started, no_match_reason, record, record_row
from rb_scheduler.cron import CronSchedules
from rb_scheduler.registry_feed import RegistryView, RegistryWatcher
from rb_store import schedules as fire_book
from rb_store.db import (
    database_url,
    make_engine,
    migrate_when_reachable,
    select_one,
    transient_database_error,
)
from rb_store.registry import approved, paused

log = logging.getLogger(__name__)


def first_delivery(msg: Msg) -> bool:
    try:
        return int(msg.metadata.num_delivered) <= 1
    except Exception:  # not a JetStream message
        return True


# How long an alert waits for the registry changes that came before it to be applied.
REGISTRY_WAIT_SECONDS = 10.0
# Seconds a cron fire is published again while NATS cannot take it (a stream leader election
# takes a few), before it is recorded as missed.
FIRE_PATIENCE = 30.0


class Scheduler:
    def __init__(self, bus: Bus, settings: Settings, engine: Engine) -> None:
        self.bus = bus
        self.settings = settings
        self.engine = engine
        self.view = RegistryView()
        self.registry_wait = REGISTRY_WAIT_SECONDS
        self.cron = CronSchedules(
            self.fire,
            misfire_grace=settings.scheduler_misfire_grace,
            coalesce=settings.scheduler_coalesce,
            missed=self.record_missed,
        )

    async def publish(
        self, runbook: Runbook, execution_id: str, params: dict[str, Any], trigger: dict[str, Any], actor: str
    ) -> bool:
        started, _ = await self.start(runbook, execution_id, params, trigger, actor)
        return started

    async def start(
        self, runbook: Runbook, execution_id: str, params: dict[str, Any], trigger: dict[str, Any], actor: str
    ) -> tuple[bool, str | None]:
        """(started now, why not started): a repeated request is (False, None)."""
        try:
            resolved = resolve_params(runbook, params)
            # Refused too when its files cannot be snapshotted (missing, or over the cap).
            data = RunRequest(runbook=runbook, params=resolved, trigger=trigger, actor=actor).event_data()
        except RbError as exc:
            log.error("not starting %s: %s", runbook.id, exc)
            return False, str(exc)
        message = TriggerRequest(execution_id=execution_id, actor=actor, data=data)
        # The trace of the execution starts here (a cron fire or an alert).
        with (
            logs.bound(execution_id),
            tracing.span(
                "rb.trigger",
                kind="producer",
                attributes={
                    "rb.execution_id": execution_id,
                    "rb.runbook_id": runbook.id,
                    "rb.trigger": str(trigger.get("type", "")),
                },
            ),
        ):
            ack = await self.bus.js.publish(
                self.bus.names.trigger_subject(runbook.id),
                message.encode(),
                headers=tracing.inject({"Nats-Msg-Id": execution_id}),
                stream=self.bus.names.triggers_stream,
            )
        return not ack.duplicate, None

    async def fire(
        self,
        runbook: Runbook,
        index: int,
        trigger: Trigger,
        fire_time: datetime,
        execution_id: str,
        revision: int | None = None,
    ) -> None:
        if revision is None:
            revision = next((e.revision for e in self.view.current() if e.runbook.id == runbook.id), None)
        context: dict[str, Any] = {
            "type": "cron",
            "cron": trigger.cron,
            "timezone": trigger.timezone,
            "fire_time": fire_time.astimezone(UTC).isoformat(),
            "index": index,
            # The approved revision this job belongs to: the executor starts it only while that
            # revision is still the approved one.
            "revision": revision,
        }
        try:
            from rb_common.expressions import render

            params = render(trigger.params, {"trigger": context, "params": {}, "env": {}})
        except Exception:
            metrics.CRON_FIRES.labels(runbook.id, "failed").inc()
            log.exception("cron fire of %s at %s failed", runbook.id, fire_time)
            return
        # NATS may be electing a stream leader or reconnecting: the fire is published again
        # (the same message id, so JetStream keeps one whichever replica gets through) for up
        # to FIRE_PATIENCE seconds; a fire no replica could publish by then is recorded as missed.
        deadline = asyncio.get_running_loop().time() + FIRE_PATIENCE
        pause = 0.25
        while True:
            try:
                started = await self.publish(runbook, execution_id, params, context, "scheduler")
                break
            except Exception as exc:
                transient = isinstance(exc, (NatsError, TimeoutError, OSError))
                if not transient or asyncio.get_running_loop().time() + pause > deadline:
                    metrics.CRON_FIRES.labels(runbook.id, "failed").inc()
                    log.exception("cron fire of %s at %s failed", runbook.id, fire_time)
                    # Missed, unless another replica got it through (its execution has begun).
                    if not await self._begun(execution_id):
                        await self.record_missed(runbook.id, index, [fire_time])
                    return
                log.warning("cron fire of %s at %s not published yet (%s); again", runbook.id, fire_time, exc)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 2.0)
        metrics.CRON_FIRES.labels(runbook.id, "triggered" if started else "duplicate").inc()
        log.info(
            "%s fire %s: %s",
            runbook.id,
            context["fire_time"],
            "triggered" if started else "already triggered by another replica",
        )
        try:
            # Persisted, so that a scheduler starting later catches up from here.
            await asyncio.to_thread(fire_book.record_fire, self.engine, runbook.id, index, fire_time)
        except Exception:
            log.exception("recording the fire of %s at %s failed", runbook.id, fire_time)

    async def _begun(self, execution_id: str) -> bool:
        try:
            return await last_event(self.bus, execution_id) is not None
        except Exception:
            return False

    async def record_missed(self, runbook_id: str, index: int, fire_times: list[datetime]) -> None:
        try:
            await asyncio.to_thread(fire_book.record_missed, self.engine, runbook_id, index, fire_times)
        except Exception:
            log.exception("recording missed fires of %s failed", runbook_id)

    async def on_alert(self, msg: Msg) -> None:
        try:
            alert = AlertEvent.model_validate_json(msg.data)
        except ValidationError as exc:
            log.error("dropping malformed alert: %s", exc.errors()[0]["msg"])
            await msg.term()
            return
        if first_delivery(msg):  # a redelivery (after a failed record) is not another receipt
            metrics.ALERTS_RECEIVED.labels(alert.source).inc()
        # As of its arrival: every registry change the API had acknowledged when the alert came
        # in is applied first (bounded: a registry that cannot catch up does not stop routing).
        if not await self.view.wait_for(alert.registry_seq, self.registry_wait):
            log.warning(
                "alert %s: the registry is at #%d, not yet at #%s of its arrival after %.0f s; "
                "matching against what is known",
                alert.dedupe_id,
                self.view.applied,
                alert.registry_seq,
                self.registry_wait,
            )
        registry = self.view.as_of(alert.registry_seq)
        revisions = {entry.runbook.id: entry.revision for entry in registry}
        matched, problems = route([entry.runbook for entry in registry], alert)
        for problem in problems:
            log.error("alert %s: %s", alert.dedupe_id, problem)
        started: list[Started] = []
        for match in matched:
            now, refused = await self.start(
                match.runbook,
                match.execution_id,
                match.params,
                {**match.context, "trigger_index": match.index, "revision": revisions.get(match.runbook.id)},
                f"alert:{alert.source}",
            )
            if now:
                metrics.ALERTS_MATCHED.labels(match.runbook.id).inc()
            elif refused is None:
                metrics.ALERTS_DEDUPLICATED.labels(match.runbook.id).inc()
            started.append(
                Started(
                    match.runbook.id,
                    revisions.get(match.runbook.id),
                    match.index,
                    match.execution_id,
                    now,
                    refused,
                )
            )
        reason = None
        if not any(s.refused is None for s in started):
            refusals = [f"{s.runbook_id}: {s.refused}" for s in started if s.refused]
            reason = "; ".join(problems + refusals) or no_match_reason(alert, [e.runbook for e in registry])
            log.info("alert %s from %s started nothing: %s", alert.dedupe_id, alert.source, reason)
        else:
            log.info(
                "alert %s from %s: %s",
                alert.dedupe_id,
                alert.source,
                ", ".join(f"{s.runbook_id} -> {s.execution_id}" for s in started if s.refused is None),
            )
        try:
            await asyncio.to_thread(record, self.engine, record_row(alert, started, reason))
        except Exception as exc:
            # The executions are started (or not) either way, but the record is what operators
            # see on /alerts (an accepted alert with no row has vanished for them). While the
            # database is unreachable the alert is not acknowledged: it comes back (consume_push
            # NAKs it) and is routed and recorded again. Idempotent: the same execution ids
            # (JetStream keeps one trigger each), an upsert of the same row. A record the
            # database refuses for good is logged and the alert acknowledged (no poison message).
            if transient_database_error(exc):
                log.warning(
                    "alert %s: recording it failed (%s); it will be handled again", alert.dedupe_id, exc
                )
                raise
            log.exception("alert %s: the database refused its record; not recorded", alert.dedupe_id)
        await msg.ack()

    async def sync_cron(self, _runbook_id: str = "") -> None:
        stopped = await asyncio.to_thread(paused, self.engine)
        since = await asyncio.to_thread(self._catch_up_points)
        self.cron.sync(self.view.current(), stopped, since)

    def _catch_up_points(self) -> dict[tuple[str, int], datetime]:
        """Per schedule, where missed fires start: the last fire time, or a later resume."""
        points = fire_book.last_fires(self.engine)
        for key, at in fire_book.resumed(self.engine).items():
            if key in points and at > points[key]:
                points[key] = at
        return points


async def run_scheduler(settings: Settings, stop: asyncio.Event, *, health: Health | None = None) -> None:
    engine = make_engine(database_url(settings))
    if not await migrate_when_reachable(engine, stop):
        return
    bus = await connect(
        settings.nats_url,
        namespace=settings.namespace,
        replicas=settings.stream_replicas,
        name="rb-scheduler",
    )
    if health is not None:
        health.add("database", lambda: asyncio.to_thread(select_one, engine))
        watch_bus(health, bus)
    scheduler = Scheduler(bus, settings, engine)
    watcher = RegistryWatcher(bus, engine, scheduler.view, scheduler.sync_cron)
    scheduler.cron.start()

    async def safety_net() -> None:
        """Registry changes arrive as events; this slow full reload only catches one whose event
        never reached NATS (and schedules paused outside the API)."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), settings.scheduler_reload_seconds)
            if stop.is_set():
                return
            try:
                corrected = scheduler.view.reconcile(await asyncio.to_thread(approved, engine))
                if corrected:
                    log.warning("registry changes without an event, taken in late: %s", ", ".join(corrected))
                    await scheduler.view.advanced()
                await scheduler.sync_cron()
            except Exception:
                log.exception("reloading the registry failed")

    try:
        # The registry first, so the first alert is matched correctly.
        await watcher.start()
        await scheduler.sync_cron()
        await asyncio.gather(
            safety_net(),
            consume_push(
                bus,
                bus.names.triggers_stream,
                durable_config("trigger-router-q", bus.names.all_of("alert")),
                scheduler.on_alert,
                stop,
            ),
        )
    finally:
        await watcher.stop()
        scheduler.cron.shutdown()
        await bus.close()
        engine.dispose()
