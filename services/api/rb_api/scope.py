"""Team scope: a runbook with `team: X` (its current revision's) is visible to members of team X
and to admins only; to everybody else it does not exist (404, and listings leave it out). An
execution is as visible as its runbook: the team recorded in its snapshot (the run's
`execution.requested`) and the runbook's current team both count.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, and_, or_, select

from rb_api.dbutil import in_thread
from rb_api.deps import Services
from rb_api.executions import bus_events, missing
from rb_api.problems import ProblemError, not_found
from rb_api.reads import valid_execution_id
from rb_common.identity import Identity
from rb_store.tables import events, runbooks


def runbook_missing(runbook_id: str) -> ProblemError:
    return not_found(f"runbook {runbook_id!r}", "runbook-not-found")


def registered_team(engine: Engine, runbook_id: str) -> tuple[bool, str | None]:
    """(whether the runbook is registered, its team)."""
    with engine.connect() as conn:
        row = conn.execute(select(runbooks.c.team).where(runbooks.c.id == runbook_id)).first()
    return (False, None) if row is None else (True, row.team)


def hidden_runbooks(engine: Engine, who: Identity) -> list[str]:
    """The registered runbooks `who` may not see."""
    teams = who.team_filter()
    if teams is None:
        return []
    query = select(runbooks.c.id).where(runbooks.c.team.is_not(None))
    if teams:
        query = query.where(runbooks.c.team.not_in(sorted(teams)))
    with engine.connect() as conn:
        return [row.id for row in conn.execute(query)]


def visible_clause(who: Identity) -> Any:
    """A WHERE clause on `runbooks` for the runbooks `who` sees (None: no restriction)."""
    teams = who.team_filter()
    if teams is None:
        return None
    if not teams:
        return runbooks.c.team.is_(None)
    return or_(runbooks.c.team.is_(None), and_(runbooks.c.team.in_(sorted(teams))))


async def require_runbook(svc: Services, who: Identity, runbook_id: str) -> bool:
    """404 if the runbook is registered but not visible to `who`; whether it is registered."""
    registered, team = await in_thread(registered_team, svc.engine, runbook_id)
    if registered and not who.sees_team(team):
        raise runbook_missing(runbook_id)
    return registered


def require_team_member(who: Identity, team: str | None) -> None:
    """403 when `who` would make a runbook scoped to a team it is not in."""
    if not who.sees_team(team):
        raise ProblemError(
            403,
            f"{who.actor} is not a member of team {team!r} and cannot scope a runbook to it",
            slug="forbidden",
            title="Forbidden",
        )


def _first_event(engine: Engine, execution_id: str) -> dict[str, Any] | None:
    with engine.connect() as conn:
        row = conn.execute(
            select(events.c.event).where(and_(events.c.execution_id == execution_id, events.c.seq == 1))
        ).first()
    return None if row is None else dict(row.event)


def snapshot_of(event: dict[str, Any] | None) -> tuple[str | None, str | None]:
    """(runbook id, team) from an execution.requested event's runbook snapshot."""
    data = (event or {}).get("data") or {}
    runbook = data.get("runbook") if isinstance(data, dict) else None
    if not isinstance(runbook, dict):
        return None, None
    team = runbook.get("team")
    return runbook.get("id"), team if isinstance(team, str) else None


async def execution_visible(svc: Services, who: Identity, execution_id: str) -> bool:
    """False if the execution's runbook (as recorded, or as registered now) is hidden from `who`;
    True for executions that are visible or unknown (the route answers 404 for those itself)."""
    if who.team_filter() is None or not valid_execution_id(execution_id):
        return True
    first = await in_thread(_first_event, svc.engine, execution_id)
    if first is None:
        recorded = await bus_events(svc, execution_id)
        if not recorded:
            return True
        first = recorded[0].model_dump(mode="json")
    runbook_id, team = snapshot_of(first)
    if not who.sees_team(team):
        return False
    if runbook_id:
        _, current = await in_thread(registered_team, svc.engine, runbook_id)
        return who.sees_team(current)
    return True


async def require_execution(svc: Services, who: Identity, execution_id: str) -> None:
    """404 for an execution of a runbook `who` may not see."""
    if not await execution_visible(svc, who, execution_id):
        raise missing(execution_id)
