"""Cron schedules of approved runbooks on APScheduler 3, publishing one trigger per fire time.

Every replica schedules every job. A fire becomes a TriggerRequest whose execution id and
message id derive from `runbook:index:fire_time`, so JetStream keeps one of the replicas'
identical requests and the executor starts one execution per fire time.

Catch-up: APScheduler 3 only catches up from a stored next_run_time, and rb keeps no job store.
So the last fire time of each schedule is persisted (rb_store.schedules), and a job added later
(a scheduler starting, a schedule resumed) gets `next_run_time` at its first fire since then that
is no older than the misfire grace: APScheduler runs those at once (each, or once coalesced);
older ones are recorded as missed. A fire APScheduler itself finds too late (EVENT_JOB_MISSED) is
recorded as missed too.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.events import EVENT_JOB_EXECUTED, EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from rb_common.cron import cron_trigger
from rb_common.model import Runbook, Trigger
from rb_common.routing import deterministic_id
from rb_store.registry import Registered

log = logging.getLogger(__name__)

Fire = Callable[[Runbook, int, Trigger, datetime, str, int], Coroutine[Any, Any, None]]
Missed = Callable[[str, int, list[datetime]], Coroutine[Any, Any, None]]
MAX_CATCH_UP = 10_000  # fire times looked at when a schedule comes back (a per-second cron, 2.7 h)
MAX_MISSES_RECORDED = 1_000


async def _noop() -> None:
    """The job body: the work happens in the listener, which knows the fire time."""


async def _nothing_missed(runbook_id: str, index: int, fire_times: list[datetime]) -> None:
    return None


def missed_fires(trigger: Any, since: datetime, now: datetime) -> list[datetime]:
    """The fire times of `trigger` after `since`, up to `now` (at most MAX_CATCH_UP, the latest)."""
    out: list[datetime] = []
    fire = trigger.get_next_fire_time(None, since + timedelta(microseconds=1))
    while fire is not None and fire <= now:
        out.append(fire)
        if len(out) > MAX_CATCH_UP:
            out.pop(0)
        fire = trigger.get_next_fire_time(fire, fire + timedelta(microseconds=1))
    return out


class CronSchedules:
    def __init__(
        self, fire: Fire, *, misfire_grace: float, coalesce: bool, missed: Missed = _nothing_missed
    ) -> None:
        self.fire = fire
        self.missed = missed
        # APScheduler 3 takes whole seconds only (its job defaults truncate): round up, and
        # use the same grace here.
        misfire_grace = max(1, math.ceil(misfire_grace))
        self.misfire_grace = misfire_grace
        self.coalesce = coalesce
        self.scheduler = AsyncIOScheduler(
            timezone="UTC",
            job_defaults={"misfire_grace_time": misfire_grace, "coalesce": coalesce, "max_instances": 1},
        )
        self.jobs: dict[str, tuple[Runbook, int, Trigger, int]] = {}
        self.pending: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self.scheduler.add_listener(self._on_executed, EVENT_JOB_EXECUTED)
        self.scheduler.add_listener(self._on_missed, EVENT_JOB_MISSED)
        self.scheduler.start()

    def shutdown(self) -> None:
        self.scheduler.shutdown(wait=False)
        for task in list(self.pending):  # fires still publishing (retrying): the other replicas'
            task.cancel()

    def sync(
        self,
        registered: list[Registered],
        paused: set[tuple[str, int]],
        since: dict[tuple[str, int], datetime] | None = None,
        now: datetime | None = None,
    ) -> None:
        """Make the jobs match the approved runbooks' cron triggers (new revision = new job).
        `since`: per (runbook, trigger index), the time from which fires count as missed (the
        last fire time, or a later resume); a new job catches up from there."""
        since = since or {}
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
            first = self._catch_up(runbook.id, index, cron, since.get((runbook.id, index)), now)
            if first is not None:
                self.scheduler.add_job(_noop, cron, id=job_id, name=runbook.id, next_run_time=first)
                log.info(
                    "scheduled %s (%s %s), catching up from %s",
                    runbook.id,
                    trigger.cron,
                    trigger.timezone,
                    first,
                )
            else:
                self.scheduler.add_job(_noop, cron, id=job_id, name=runbook.id)
                log.info("scheduled %s (%s %s)", runbook.id, trigger.cron, trigger.timezone)
            self.jobs[job_id] = wanted[job_id]

    def _catch_up(
        self, runbook_id: str, index: int, cron: Any, since: datetime | None, now: datetime | None
    ) -> datetime | None:
        """The first fire to run at once (no older than the grace), after recording the older
        ones as missed; None: nothing was missed."""
        if since is None:
            return None  # never fired: nothing to catch up
        now = now or datetime.now(UTC)
        fires = missed_fires(cron, since, now)
        grace = timedelta(seconds=self.misfire_grace)
        late = [f for f in fires if now - f > grace]
        if late:
            log.warning(
                "%s trigger %d: %d fire(s) missed beyond the %.0fs grace, not run (%s .. %s)",
                runbook_id,
                index,
                len(late),
                self.misfire_grace,
                late[0].isoformat(),
                late[-1].isoformat(),
            )
            self._spawn(self.missed(runbook_id, index, late[-MAX_MISSES_RECORDED:]))
        due = [f for f in fires if now - f <= grace]
        return due[0] if due else None

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)

    def _on_executed(self, event: JobExecutionEvent) -> None:
        """A fire APScheduler ran (each of a catch-up's, or the coalesced latest)."""
        job = self.jobs.get(event.job_id)
        if job is None:
            return
        runbook, index, trigger, revision = job
        fire_time = event.scheduled_run_time
        execution_id = deterministic_id("cron", runbook.id, str(index), fire_time.isoformat())
        self._spawn(self.fire(runbook, index, trigger, fire_time, execution_id, revision))

    def _on_missed(self, event: JobExecutionEvent) -> None:
        job = self.jobs.get(event.job_id)
        if job is None:
            return
        runbook, index, _, _ = job
        log.warning(
            "%s trigger %d: fire %s missed (later than the grace)",
            runbook.id,
            index,
            event.scheduled_run_time,
        )
        self._spawn(self.missed(runbook.id, index, [event.scheduled_run_time]))
