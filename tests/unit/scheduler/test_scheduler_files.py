"""Cron fires and routed alerts start executions that carry the revision's files."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rb_common.bus import Names
from rb_common.loader import load_runbook_text
from rb_common.settings import Settings
from rb_scheduler.service import Scheduler

SCHEMA = '{"type": "object"}'
RUNBOOK = f"""\
id: sched-files
name: Scheduled with a schema
triggers:
  - cron: "*/5 * * * *"
steps:
  - {{id: check, type: schema_check, inputs: {{entities: [], schema: schemas/s.json}}}}
files: {{schemas/s.json: {json.dumps(SCHEMA)}}}
"""


@dataclass
class _Ack:
    duplicate: bool = False


@dataclass
class _JetStream:
    sent: list[dict[str, Any]] = field(default_factory=list)

    async def publish(self, subject: str, payload: bytes, **kwargs: Any) -> _Ack:
        self.sent.append({"subject": subject, **json.loads(payload)})
        return _Ack()


@dataclass
class _Bus:
    names: Names = field(default_factory=Names)
    js: _JetStream = field(default_factory=_JetStream)


async def test_cron_fires_and_alerts_carry_the_files() -> None:
    runbook, _ = load_runbook_text(RUNBOOK)
    bus = _Bus()
    scheduler = Scheduler(bus, Settings(), engine=None)  # type: ignore[arg-type]
    fire_time = datetime(2025, 1, 1, tzinfo=UTC)
    await scheduler.fire(runbook, 0, runbook.triggers[0], fire_time, "sched-files:fire")
    await scheduler.start(runbook, "alert-1", {}, {"type": "alert"}, "alert:alertmanager")
    assert [m["execution_id"] for m in bus.js.sent] == ["sched-files:fire", "alert-1"]
    for message in bus.js.sent:
        assert message["data"]["files"] == {"schemas/s.json": SCHEMA}
        assert "files" not in message["data"]["runbook"]
