"""The scheduler's counters: cron fires by outcome, alerts received, matched and deduplicated
(a repeated alert whose execution already exists)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY
from test_scheduler_files import _Ack
from test_scheduler_lifecycle import RUNBOOK, _Msg

from rb_api import registry
from rb_api.definitions import parse_submission
from rb_common.bus import Names
from rb_common.messages import AlertEvent
from rb_common.settings import Settings
from rb_scheduler.service import Scheduler
from rb_store.db import make_engine, migrate
from rb_store.registry import approved


@dataclass
class _DedupingJetStream:
    """Like JetStream with a message id: the second message with the same id is a duplicate."""

    ids: set[str] = field(default_factory=set)

    async def publish(self, subject: str, payload: bytes, **kwargs: Any) -> _Ack:
        json.loads(payload)
        msg_id = kwargs["headers"]["Nats-Msg-Id"]
        seen = msg_id in self.ids
        self.ids.add(msg_id)
        return _Ack(duplicate=seen)


@dataclass
class _Bus:
    names: Names = field(default_factory=Names)
    js: _DedupingJetStream = field(default_factory=_DedupingJetStream)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_fires_and_alerts_are_counted_by_outcome(tmp_path: Path, monkeypatch: Any) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'rb.db'}")
    migrate(engine)
    rid = "metrics-sched"
    registry.create(engine, parse_submission(RUNBOOK.format(rid=rid).encode(), "application/yaml"), "key:a")
    registry.set_status(engine, rid, registry.APPROVED, "key:approver")
    entries = approved(engine)
    scheduler = Scheduler(_Bus(), Settings(), engine=engine)  # type: ignore[arg-type]
    scheduler.view.load(entries, 0)
    monkeypatch.setattr("rb_scheduler.service.record", lambda *a, **k: None)
    runbook = entries[0].runbook
    names = [
        ("rb_cron_fires_total", {"runbook": rid, "outcome": "triggered"}),
        ("rb_cron_fires_total", {"runbook": rid, "outcome": "duplicate"}),
        ("rb_alerts_received_total", {"source": "alertmanager"}),
        ("rb_alerts_matched_total", {"runbook": rid}),
        ("rb_alerts_deduplicated_total", {"runbook": rid}),
    ]
    before = [sample(n, **labels) for n, labels in names]

    when = datetime(2025, 1, 1, tzinfo=UTC)
    for _ in range(2):  # two replicas fire the same time: one triggers, one finds it done
        await scheduler.fire(runbook, 0, runbook.triggers[0], when, "cron-1")
    alert = AlertEvent(
        source="alertmanager", dedupe_id="a-1", name="Lifecycle", labels={"alertname": "Lifecycle"}
    )
    other = AlertEvent(source="alertmanager", dedupe_id="a-2", name="Other", labels={"alertname": "Other"})
    for event in (alert, alert, other):  # the same alert twice (e.g. two senders), one unmatched
        await scheduler.on_alert(_Msg(event.encode()))  # type: ignore[arg-type]

    after = [sample(n, **labels) for n, labels in names]
    assert [a - b for a, b in zip(after, before, strict=True)] == [1, 1, 3, 1, 1]
    engine.dispose()
