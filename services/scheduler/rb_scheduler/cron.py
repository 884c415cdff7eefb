"""Cron schedules of approved runbooks on APScheduler 3, publishing one trigger per fire time.

Every replica schedules every job. A fire becomes a TriggerRequest whose execution id and
message id derive from `runbook:index:fire_time`, so JetStream keeps one of the replicas'
identical requests and the executor starts one execution per fire time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any

from apscheduler.events import EVENT_JOB_SUBMITTED, JobSubmissionEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from rb_common.cron import cron_trigger
from rb_common.model import Runbook, Trigger
from rb_common.routing import deterministic_id
from rb_store.registry import Registered

log = logging.getLogger(__name__)

Fire = Callable[[Runbook, int, Trigger, datetime, str, int], Coroutine[Any, Any, None]]


def _noop() -> None:
    """The job body: the work happens in the submission listener, which knows the fire time."""


class CronSchedules:
    def __init__(self, fire: Fire, *, misfire_grace: float, coalesce: bool) -> None:
        self.fire = fire
        self.scheduler = AsyncIOScheduler(
            timezone="UTC",
            job_defaults={"misfire_grace_time": misfire_grace, "coalesce": coalesce, "max_instances": 1},
        )
        self.jobs: dict[str, tuple[Runbook, int, Trigger, int]] = {}
        self.pending: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self.scheduler.add_listener(self._on_submitted, EVENT_JOB_SUBMITTED)
        self.scheduler.start()

    def shutdown(self) -> None:
        self.scheduler.shutdown(wait=False)

    def sync(self, registered: list[Registered], paused: set[tuple[str, int]]) -> None:
        """Make the jobs match the approved runbooks' cron triggers (new revision = new job)."""
        wanted: dict[str, tuple[Runbook, int, Trigger, int]] = {}
        for entry in registered:
            for index, trigger in enumerate(entry.runbook.triggers):
                if trigger.cron and (entry.runbook.id, index) not in paused:
                    wanted[
                        f"{entry.runbook.id}:{index}:{entry.revision}:{trigger.cron}:{trigger.timezone}"
                    ] = (entry.runbook, index, trigger, entry.revision)
        for job_id in set(self.jobs) - set(wanted):
            self.scheduler.remove_job(job_id)
            del self.jobs[job_id]
            log.info("unscheduled %s", job_id)
        for job_id in set(wanted) - set(self.jobs):
            runbook, index, trigger, _ = wanted[job_id]
            assert trigger.cron is not None
            try:
                cron = cron_trigger(trigger.cron, trigger.timezone)
            except Exception as exc:
                log.error("runbook %s trigger %d: %s", runbook.id, index, exc)
                continue
            self.scheduler.add_job(_noop, cron, id=job_id, name=runbook.id)
            self.jobs[job_id] = wanted[job_id]
            log.info("scheduled %s (%s %s)", runbook.id, trigger.cron, trigger.timezone)

    def _on_submitted(self, event: JobSubmissionEvent) -> None:
        job = self.jobs.get(event.job_id)
        if job is None:
            return
        runbook, index, trigger, revision = job
        # Coalesced misfires arrive together: the latest fire time stands for them all.
        fire_time = max(event.scheduled_run_times)
        execution_id = deterministic_id("cron", runbook.id, str(index), fire_time.isoformat())
        task = asyncio.get_running_loop().create_task(
            self.fire(runbook, index, trigger, fire_time, execution_id, revision)
        )
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)
