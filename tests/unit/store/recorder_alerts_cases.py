"""The `alerts` table's migration (0003), run against SQLite (unit) and PostgreSQL (integration):
upgrade from the schema before it, write and read a record, downgrade and upgrade again."""

from __future__ import annotations

from datetime import UTC, datetime

from alembic import command
from sqlalchemy import Engine, inspect

from rb_api.alert_records import list_alerts
from rb_common.messages import AlertEvent
from rb_scheduler.alert_log import Started, record, record_row
from rb_store.db import alembic_config, migrate


def check_alerts_migration(engine: Engine) -> None:
    config = alembic_config(engine)
    command.upgrade(config, "0002")
    assert "alerts" not in inspect(engine).get_table_names()
    migrate(engine)
    columns = {c["name"] for c in inspect(engine).get_columns("alerts")}
    assert {
        "id",
        "source",
        "dedupe_id",
        "status",
        "labels",
        "summary",
        "received_at",
        "matched",
        "matches",
    } <= (columns)
    assert {"reason", "registry_seq", "routed_at", "runbook_id", "name"} <= columns
    indexes = {i["name"] for i in inspect(engine).get_indexes("alerts")}
    assert {"ix_alerts_received_at", "ix_alerts_source", "ix_alerts_matched"} <= indexes

    at = datetime(2026, 2, 3, 4, 5, 6, tzinfo=UTC)
    long_id = "fp-" + "x" * 2000  # dedupe ids may be long (CloudEvents source + id)
    event = AlertEvent(
        source="cloudevents",
        dedupe_id=long_id,
        labels={"alertname": "DiskFull"},
        received_at=at.isoformat(),
        registry_seq=2**40,
    )
    record(engine, record_row(event, [Started("rb-x", 1, 0, "e" * 32, True)], None, at))
    record(engine, record_row(event, [Started("rb-x", 1, 0, "e" * 32, False)], None, at))  # redelivered
    unmatched = AlertEvent(source="cloudevents", dedupe_id="other", received_at=at.isoformat())
    record(engine, record_row(unmatched, [], "no approved runbook matched its labels", at))
    found = list_alerts(engine, source="cloudevents", status=None, matched=True, limit=10, offset=0)
    assert found["total"] == 1
    item = found["items"][0]
    assert item["dedupe_id"] == long_id and item["execution_ids"] == ["e" * 32]
    assert item["registry_seq"] == 2**40 and item["received_at"] == at.isoformat()
    assert item["labels"] == {"alertname": "DiskFull"}
    none = list_alerts(engine, source=None, status="firing", matched=False, limit=10, offset=0)
    assert [i["reason"] for i in none["items"]] == ["no approved runbook matched its labels"]

    command.downgrade(config, "0002")
    assert "alerts" not in inspect(engine).get_table_names()
    migrate(engine)
    assert "alerts" in inspect(engine).get_table_names()
