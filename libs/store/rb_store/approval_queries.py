"""Read side of approval steps for the API: the `approvals` rows the recorder projects, as
plain JSON dicts (datetimes as ISO 8601 strings in UTC)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import ColumnElement, Engine, RowMapping, select

from rb_store.queries import iso
from rb_store.tables import approvals


def _approval(row: RowMapping) -> dict[str, Any]:
    return {
        "id": row["approval_id"],
        "execution_id": row["execution_id"],
        "step_id": row["step_id"],
        "runbook_id": row["runbook_id"],
        "status": row["status"],
        "prompt": row["prompt"],
        "approvers": row["approvers"] or [],
        "min_approvals": row["min_approvals"],
        "require_comment": bool(row["require_comment"]),
        "timeout_at": iso(row["timeout_at"]),
        "timeout_action": row["timeout_action"],
        "requested_by": row["requested_by"],
        "requested_at": iso(row["requested_at"]),
        "decided_at": iso(row["decided_at"]),
        "decisions": row["decisions"] or [],
    }


def list_approvals(
    engine: Engine,
    status: str | None = None,
    limit: int = 50,
    offset: int = 0,
    exclude_runbooks: Collection[str] = (),
) -> list[dict[str, Any]]:
    """Approvals, newest request first; those of `exclude_runbooks` (hidden from the caller) left out."""
    where: list[ColumnElement[bool]] = [approvals.c.approval_id.is_not(None)]
    if status is not None:
        where.append(approvals.c.status == status)
    if exclude_runbooks:
        where.append(approvals.c.runbook_id.not_in(sorted(exclude_runbooks)))
    query = (
        select(approvals)
        .where(*where)
        .order_by(approvals.c.requested_at.desc(), approvals.c.approval_id)
        .limit(max(0, limit))
        .offset(max(0, offset))
    )
    with engine.connect() as connection:
        return [_approval(row) for row in connection.execute(query).mappings()]


def get_approval(engine: Engine, approval_id: str) -> dict[str, Any] | None:
    with engine.connect() as connection:
        row = (
            connection.execute(select(approvals).where(approvals.c.approval_id == approval_id))
            .mappings()
            .first()
        )
    return _approval(row) if row is not None else None
