"""The scheduler's doors: cron jobs and alert matches exist only for APPROVED runbooks, at their
approved revision, and the trigger names that revision (the executor re-checks it)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from test_scheduler_files import _Bus

from rb_api import registry
from rb_api.definitions import parse_submission
from rb_common.messages import AlertEvent
from rb_common.settings import Settings
from rb_scheduler.cron import CronSchedules
from rb_scheduler.service import Scheduler
from rb_store.db import make_engine, migrate
from rb_store.registry import approved

RUNBOOK = """\
id: {rid}
name: Scheduled
version: 1.0.0
owner: tests
legal_basis: Tests of the scheduler
triggers:
  - cron: "*/5 * * * *"
  - alert: {{source: alertmanager, match: {{alertname: Lifecycle}}}}
steps:
  - {{id: a, type: transform, inputs: {{x: 1}}}}
"""


class _Msg:
    def __init__(self, data: bytes) -> None:
        self.data = data

    async def ack(self) -> None:
        pass

    async def term(self) -> None:
        pass


async def test_only_approved_revisions_are_scheduled_and_routed(tmp_path: Path, monkeypatch: Any) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'rb.db'}")
    migrate(engine)
    for rid in ("draft", "approved", "deprecated"):
        sub = parse_submission(RUNBOOK.format(rid=rid).encode(), "application/yaml")
        registry.create(engine, sub, "key:author")
    registry.set_status(engine, "approved", registry.APPROVED, "key:approver")
    registry.set_status(engine, "deprecated", registry.APPROVED, "key:approver")
    registry.set_status(engine, "deprecated", registry.DEPRECATED, "key:approver")
    entries = approved(engine)
    assert [(e.runbook.id, e.revision) for e in entries] == [("approved", 1)]

    fired: list[tuple[str, int]] = []

    async def fire(runbook: Any, index: int, trigger: Any, when: datetime, eid: str, revision: int) -> None:
        fired.append((runbook.id, revision))

    cron = CronSchedules(fire, misfire_grace=1, coalesce=True)
    cron.sync(entries, set())
    assert [job[0].id for job in cron.jobs.values()] == ["approved"]

    bus = _Bus()
    scheduler = Scheduler(bus, Settings(), engine=engine)  # type: ignore[arg-type]
    scheduler.view.load(entries, 0)
    monkeypatch.setattr("rb_scheduler.service.record", lambda *a, **k: None)
    runbook = entries[0].runbook
    await scheduler.fire(runbook, 0, runbook.triggers[0], datetime(2025, 1, 1, tzinfo=UTC), "cron-1")
    alert = AlertEvent(
        source="alertmanager", dedupe_id="a-1", name="Lifecycle", labels={"alertname": "Lifecycle"}
    )
    await scheduler.on_alert(_Msg(alert.encode()))  # type: ignore[arg-type]
    started = {m["data"]["runbook"]["id"]: m["data"]["trigger"] for m in bus.js.sent}
    assert set(started) == {"approved"}  # neither the DRAFT nor the DEPRECATED one
    assert [m["data"]["trigger"]["revision"] for m in bus.js.sent] == [1, 1]
    assert [m["data"]["trigger"]["type"] for m in bus.js.sent] == ["cron", "alert"]
    engine.dispose()
