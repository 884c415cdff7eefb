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
from pydantic import ValidationError

from rb_common.bus import Bus, connect
from rb_common.errors import RbError
from rb_common.health import Health, nats_answers
from rb_common.messages import AlertEvent, TriggerRequest
from rb_common.model import Runbook, Trigger
from rb_common.params import resolve_params
from rb_common.routing import route
from rb_common.settings import Settings
from rb_executor.runner import RunRequest
from rb_executor.service.consumers import consume_push, durable_config
from rb_recorder.db import database_url, make_engine, select_one
from rb_recorder.service import migrate_when_reachable
from rb_scheduler.cron import CronSchedules
from rb_scheduler.registry import Registered, approved, paused

log = logging.getLogger(__name__)


class Scheduler:
    def __init__(self, bus: Bus, settings: Settings) -> None:
        self.bus = bus
        self.settings = settings
        self.registered: list[Registered] = []
        self.cron = CronSchedules(
            self.fire, misfire_grace=settings.scheduler_misfire_grace, coalesce=settings.scheduler_coalesce
        )

    async def publish(
        self, runbook: Runbook, execution_id: str, params: dict[str, Any], trigger: dict[str, Any], actor: str
    ) -> bool:
        try:
            resolved = resolve_params(runbook, params)
        except RbError as exc:
            log.error("not starting %s: %s", runbook.id, exc)
            return False
        data = RunRequest(runbook=runbook, params=resolved, trigger=trigger, actor=actor).event_data()
        message = TriggerRequest(execution_id=execution_id, actor=actor, data=data)
        ack = await self.bus.js.publish(
            self.bus.names.trigger_subject(runbook.id),
            message.encode(),
            headers={"Nats-Msg-Id": execution_id},
            stream=self.bus.names.triggers_stream,
        )
        return not ack.duplicate

    async def fire(
        self, runbook: Runbook, index: int, trigger: Trigger, fire_time: datetime, execution_id: str
    ) -> None:
        context = {
            "type": "cron",
            "cron": trigger.cron,
            "timezone": trigger.timezone,
            "fire_time": fire_time.astimezone(UTC).isoformat(),
            "index": index,
        }
        try:
            from rb_common.expressions import render

            params = render(trigger.params, {"trigger": context, "params": {}, "env": {}})
            started = await self.publish(runbook, execution_id, params, context, "scheduler")
        except Exception:
            log.exception("cron fire of %s at %s failed", runbook.id, fire_time)
            return
        log.info(
            "%s fire %s: %s",
            runbook.id,
            context["fire_time"],
            "triggered" if started else "already triggered by another replica",
        )

    async def on_alert(self, msg: Msg) -> None:
        try:
            alert = AlertEvent.model_validate_json(msg.data)
        except ValidationError as exc:
            log.error("dropping malformed alert: %s", exc.errors()[0]["msg"])
            await msg.term()
            return
        matched, problems = route([r.runbook for r in self.registered], alert)
        for problem in problems:
            log.error("alert %s: %s", alert.dedupe_id, problem)
        for match in matched:
            await self.publish(
                match.runbook,
                match.execution_id,
                match.params,
                {**match.context, "trigger_index": match.index},
                f"alert:{alert.source}",
            )
        if not matched:
            log.info("alert %s from %s matched no approved runbook", alert.dedupe_id, alert.source)
        await msg.ack()


async def run_scheduler(settings: Settings, stop: asyncio.Event, *, health: Health | None = None) -> None:
    engine = make_engine(database_url(settings))
    if not await migrate_when_reachable(engine, stop):
        return
    bus = await connect(settings.nats_url, namespace=settings.namespace, name="rb-scheduler")
    if health is not None:
        health.add("database", lambda: asyncio.to_thread(select_one, engine))
        health.add("nats", lambda: nats_answers(bus.nc))
    scheduler = Scheduler(bus, settings)
    scheduler.cron.start()

    async def reload() -> None:
        while not stop.is_set():
            try:
                registered, stopped = await asyncio.gather(
                    asyncio.to_thread(approved, engine), asyncio.to_thread(paused, engine)
                )
                scheduler.registered = registered
                scheduler.cron.sync(registered, stopped)
            except Exception:
                log.exception("reloading the registry failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), settings.scheduler_reload_seconds)

    try:
        await reload_once(scheduler, engine)
        await asyncio.gather(
            reload(),
            consume_push(
                bus,
                bus.names.triggers_stream,
                durable_config("trigger-router-q", bus.names.all_of("alert")),
                scheduler.on_alert,
                stop,
            ),
        )
    finally:
        scheduler.cron.shutdown()
        await bus.close()
        engine.dispose()


async def reload_once(scheduler: Scheduler, engine: Any) -> None:
    """Load the registry before consuming alerts, so the first alert is matched correctly."""
    scheduler.registered = await asyncio.to_thread(approved, engine)
    scheduler.cron.sync(scheduler.registered, await asyncio.to_thread(paused, engine))
