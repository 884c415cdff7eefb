"""The alerts the scheduler's router handled (the `alerts` table it writes): what each matched,
with the executions it started, or why it matched nothing."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import Engine, func, or_, select

from rb_api.dbutil import iso
from rb_store.refusals import refused_executions
from rb_store.tables import alerts

STATUSES = ("firing", "resolved")


def _item(row: Any, hidden: frozenset[str] = frozenset(), refused: dict[str, str] | None = None) -> dict[str, Any]:
    found = [m for m in row["matches"] or [] if m.get("runbook_id") not in hidden]
    # A start the executor refused after the router's match (queue full, on_limit: reject).
    refused = refused or {}
    found = [
        {**m, "refused": refused[m["execution_id"]], "refused_by": "executor"}
        if not m.get("refused") and m.get("execution_id") in refused
        else m
        for m in found
    ]
    return {
        "id": row["id"],
        "dedupe_id": row["dedupe_id"],
        "source": row["source"],
        "status": row["status"],
        "name": row["name"],
        "summary": row["summary"],
        "labels": row["labels"] or {},
        "runbook_id": row["runbook_id"],
        "received_at": iso(row["received_at"]),
        "routed_at": iso(row["routed_at"]),
        "registry_seq": row["registry_seq"],
        "matched": bool(row["matched"]),
        "runbook_ids": [m.get("runbook_id") for m in found],
        "execution_ids": [m.get("execution_id") for m in found if not m.get("refused")],
        "matches": found,
        "reason": row["reason"],
    }


def list_alerts(
    engine: Engine,
    *,
    source: str | None,
    status: str | None,
    matched: bool | None,
    limit: int,
    offset: int,
    hidden_runbooks: Collection[str] = (),
) -> dict[str, Any]:
    """A page of alerts, newest first, and how many match the filters. Alerts addressed to a
    runbook in `hidden_runbooks` (team scope) are left out, and so are matches of those."""
    hidden = frozenset(hidden_runbooks)
    where = []
    if hidden:
        where.append(or_(alerts.c.runbook_id.is_(None), alerts.c.runbook_id.not_in(sorted(hidden))))
    if source is not None:
        where.append(alerts.c.source == source)
    if status is not None:
        where.append(alerts.c.status == status)
    if matched is not None:
        where.append(alerts.c.matched.is_(matched))
    page = (
        select(alerts)
        .where(*where)
        .order_by(alerts.c.received_at.desc(), alerts.c.id)
        .limit(limit)
        .offset(offset)
    )
    count = select(func.count()).select_from(alerts).where(*where)
    with engine.connect() as connection:
        total = int(connection.scalar(count) or 0)
        rows = list(connection.execute(page).mappings())
    started = {m.get("execution_id") for row in rows for m in row["matches"] or [] if m.get("execution_id")}
    refused = refused_executions(engine, {e for e in started if isinstance(e, str)})
    items = [_item(row, hidden, refused) for row in rows]
    return {"items": items, "total": total, "limit": limit, "offset": offset}
