"""The runbooks that may start themselves: APPROVED ones, at their current revision."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pydantic import ValidationError
from sqlalchemy import Engine, and_, select

from rb_common.model import Runbook
from rb_store.tables import runbook_versions, runbooks, schedule_state

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Registered:
    runbook: Runbook
    revision: int


def approved(engine: Engine) -> list[Registered]:
    query = (
        select(runbooks.c.id, runbooks.c.current_revision, runbook_versions.c.definition)
        .join(
            runbook_versions,
            and_(
                runbook_versions.c.runbook_id == runbooks.c.id,
                runbook_versions.c.revision == runbooks.c.current_revision,
            ),
        )
        .where(runbooks.c.status == "APPROVED")
        .order_by(runbooks.c.id)
    )
    out = []
    with engine.connect() as connection:
        for row in connection.execute(query):
            try:
                out.append(Registered(Runbook.model_validate(row.definition), row.current_revision))
            except ValidationError as exc:
                log.error(
                    "runbook %s revision %s no longer loads: %s",
                    row.id,
                    row.current_revision,
                    exc.errors()[0]["msg"],
                )
    return out


def paused(engine: Engine) -> set[tuple[str, int]]:
    with engine.connect() as connection:
        rows = connection.execute(
            select(schedule_state.c.runbook_id, schedule_state.c.trigger_index).where(
                schedule_state.c.paused.is_(True)
            )
        )
        return {(row.runbook_id, row.trigger_index) for row in rows}


def approved_one(engine: Engine, runbook_id: str) -> Registered | None:
    """The runbook's current revision if it is APPROVED (a sub-runbook's child runs only that)."""
    query = (
        select(runbooks.c.current_revision, runbook_versions.c.definition)
        .join(
            runbook_versions,
            and_(
                runbook_versions.c.runbook_id == runbooks.c.id,
                runbook_versions.c.revision == runbooks.c.current_revision,
            ),
        )
        .where(runbooks.c.id == runbook_id, runbooks.c.status == "APPROVED")
    )
    with engine.connect() as connection:
        row = connection.execute(query).first()
    if row is None:
        return None
    return Registered(Runbook.model_validate(row.definition), row.current_revision)
