"""An alert whose record could not be written (the database restarting) is not acknowledged:
it comes back and is routed and recorded again, under the same execution id (issue 19's chaos
run lost 4 of ~225 alert records to PostgreSQL restarts before this)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from test_scheduler_lifecycle import RUNBOOK
from test_scheduler_metrics import _Bus

from rb_api import registry
from rb_api.definitions import parse_submission
from rb_common.messages import AlertEvent
from rb_common.settings import Settings
from rb_scheduler.service import Scheduler
from rb_store.db import make_engine, migrate
from rb_store.registry import approved


class _Msg:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.acked = 0

    async def ack(self) -> None:
        self.acked += 1

    async def term(self) -> None:
        raise AssertionError("a well-formed alert is never terminated")


async def test_an_alert_that_could_not_be_recorded_is_handled_again(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'rb.db'}")
    migrate(engine)
    rid = "redelivered"
    registry.create(engine, parse_submission(RUNBOOK.format(rid=rid).encode(), "application/yaml"), "key:a")
    registry.set_status(engine, rid, registry.APPROVED, "key:approver")
    bus = _Bus()
    scheduler = Scheduler(bus, Settings(), engine=engine)
    scheduler.view.load(approved(engine), 0)
    alert = AlertEvent(
        source="alertmanager", dedupe_id="fp-1", name="Lifecycle", labels={"alertname": "Lifecycle"}
    )
    msg = _Msg(alert.encode())

    with engine.begin() as conn:  # the record's table is gone for a moment
        conn.execute(text("ALTER TABLE alerts RENAME TO alerts_away"))
    with pytest.raises(Exception, match="alerts"):
        await scheduler.on_alert(msg)  # type: ignore[arg-type]
    assert msg.acked == 0  # not acknowledged: JetStream delivers it again
    assert len(bus.js.ids) == 1  # its execution's trigger was published

    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE alerts_away RENAME TO alerts"))
    await scheduler.on_alert(msg)  # type: ignore[arg-type]  # the redelivery
    assert msg.acked == 1
    assert len(bus.js.ids) == 1  # the same trigger id: no second execution
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT dedupe_id, matched, matches FROM alerts")).all()
    assert len(rows) == 1 and rows[0].dedupe_id == "fp-1" and rows[0].matched
    assert '"execution_id"' in str(rows[0].matches)
    engine.dispose()
