"""The runbook registry: revisions and lifecycle in the `runbooks` / `runbook_versions` tables.

Synchronous SQLAlchemy Core on the engine (routes run these in the thread pool). Every change of
the definition is a new revision (1, 2, ...); `runbooks.current_revision` points at the live one.
Lifecycle: DRAFT -> APPROVED; any edit (PUT, rollback) of an APPROVED runbook makes it DRAFT
again (nothing runs it until its new revision is approved); DEPRECATED is final (no edits, no
executions, no approval). Only APPROVED runbooks execute, through every door (rb_api.triggering,
the scheduler, and the executor's own check when a run starts).

Four eyes: an admin may not approve a revision they authored (403). Every approval, refusal and
deprecation is recorded in `runbook_decisions` with the actor and the revision's author. The one
exception is the installer: `rb up`'s `system` identity approves the bundled runbooks it has
just registered itself, recorded with the reason "bundled with rb up".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, and_, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from rb_api.dbutil import iso, utcnow
from rb_api.definitions import Submission
from rb_api.problems import ProblemError, not_found
from rb_store.tables import runbook_decisions, runbook_versions, runbooks

DRAFT = "DRAFT"
APPROVED = "APPROVED"
DEPRECATED = "DEPRECATED"
STATUSES = (DRAFT, APPROVED, DEPRECATED)

INSTALLER_REASON = "bundled with rb up"

_ATTEMPTS = 5  # optimistic retries when two writers race for the next revision


@dataclass(frozen=True)
class Current:
    """What execute needs: the live revision of a runbook."""

    id: str
    status: str
    revision: int
    definition: dict[str, Any]


def _missing(runbook_id: str) -> ProblemError:
    return not_found(f"runbook {runbook_id!r}", "runbook-not-found")


def _deprecated(runbook_id: str, action: str) -> ProblemError:
    return ProblemError(
        409,
        f"runbook {runbook_id!r} is DEPRECATED and cannot be {action}",
        slug="runbook-deprecated",
        title="Runbook is deprecated",
    )


def team_of(definition: dict[str, Any] | None) -> str | None:
    """The `team:` of a definition (None: not team-scoped)."""
    team = (definition or {}).get("team")
    return team if isinstance(team, str) and team else None


def _row(conn: Connection, runbook_id: str) -> Any:
    return conn.execute(select(runbooks).where(runbooks.c.id == runbook_id)).first()


def _version_row(conn: Connection, runbook_id: str, revision: int) -> Any:
    return conn.execute(
        select(runbook_versions).where(
            and_(runbook_versions.c.runbook_id == runbook_id, runbook_versions.c.revision == revision)
        )
    ).first()


def _summary(rb: Any, version: Any) -> dict[str, Any]:
    definition = (version.definition if version is not None else None) or {}
    return {
        "id": rb.id,
        "name": definition.get("name"),
        "version": version.version if version is not None else None,
        "revision": rb.current_revision,
        "status": rb.status,
        "owner": definition.get("owner"),
        "description": definition.get("description", ""),
        "tags": definition.get("tags", []),
        "environment": definition.get("environment", "development"),
        "team": team_of(definition),
        "created_at": iso(rb.created_at),
        "updated_at": iso(rb.updated_at),
    }


def _result(runbook_id: str, revision: int, status: str, version: str, warnings: list[Any]) -> dict[str, Any]:
    return {
        "id": runbook_id,
        "revision": revision,
        "status": status,
        "version": version,
        "warnings": warnings,
    }


def create(engine: Engine, sub: Submission, actor: str) -> dict[str, Any]:
    runbook_id = sub.runbook.id
    now = utcnow()
    try:
        with engine.begin() as conn:
            if _row(conn, runbook_id) is not None:
                raise _exists(runbook_id)
            conn.execute(
                insert(runbooks).values(
                    id=runbook_id,
                    status=DRAFT,
                    current_revision=1,
                    created_at=now,
                    updated_at=now,
                    team=team_of(sub.definition),
                )
            )
            _insert_version(conn, runbook_id, 1, sub.runbook.version, sub.definition, sub.source, actor)
    except IntegrityError:
        raise _exists(runbook_id) from None
    return _result(runbook_id, 1, DRAFT, sub.runbook.version, sub.warnings)


def _exists(runbook_id: str) -> ProblemError:
    return ProblemError(
        409,
        f"runbook {runbook_id!r} already exists: PUT /api/v1/runbooks/{runbook_id} to add a revision",
        slug="runbook-exists",
        title="Runbook already exists",
    )


def _insert_version(
    conn: Connection,
    runbook_id: str,
    revision: int,
    version: str,
    definition: dict[str, Any],
    source: str | None,
    actor: str,
) -> None:
    conn.execute(
        insert(runbook_versions).values(
            runbook_id=runbook_id,
            revision=revision,
            version=version,
            definition=definition,
            source=source,
            created_at=utcnow(),
            created_by=actor,
        )
    )


def _new_revision(
    engine: Engine,
    runbook_id: str,
    version: str,
    definition: dict[str, Any],
    source: str | None,
    actor: str,
    action: str,
    skip_if_unchanged: bool,
) -> tuple[int, str, bool]:
    """(revision, status, changed): append a revision unless it equals the current one."""
    for _ in range(_ATTEMPTS):
        try:
            with engine.begin() as conn:
                rb = _row(conn, runbook_id)
                if rb is None:
                    raise _missing(runbook_id)
                if rb.status == DEPRECATED:
                    raise _deprecated(runbook_id, action)
                current = _version_row(conn, runbook_id, rb.current_revision)
                if (
                    skip_if_unchanged
                    and current is not None
                    and current.definition == definition
                    and current.source == source
                ):
                    return rb.current_revision, rb.status, False
                revision = rb.current_revision + 1
                _insert_version(conn, runbook_id, revision, version, definition, source, actor)
                moved = conn.execute(
                    update(runbooks)
                    .where(
                        and_(runbooks.c.id == runbook_id, runbooks.c.current_revision == rb.current_revision)
                    )
                    .values(
                        current_revision=revision, status=DRAFT, updated_at=utcnow(), team=team_of(definition)
                    )
                )
                if moved.rowcount != 1:
                    raise IntegrityError("concurrent revision", None, Exception("lost race"))
                return revision, DRAFT, True
        except IntegrityError:
            continue
    raise ProblemError(
        409, f"runbook {runbook_id!r} is being changed concurrently; retry", slug="concurrent-change"
    )


def update_definition(engine: Engine, runbook_id: str, sub: Submission, actor: str) -> dict[str, Any]:
    if sub.runbook.id != runbook_id:
        raise ProblemError(
            422,
            f"the body's id {sub.runbook.id!r} does not match the path's {runbook_id!r}",
            slug="id-mismatch",
            title="Invalid runbook",
            errors=[{"step": None, "message": "id does not match the path", "line": None, "level": "error"}],
        )
    revision, status, _ = _new_revision(
        engine, runbook_id, sub.runbook.version, sub.definition, sub.source, actor, "changed", True
    )
    return _result(runbook_id, revision, status, sub.runbook.version, sub.warnings)


def rollback(engine: Engine, runbook_id: str, revision: int, actor: str) -> dict[str, Any]:
    with engine.connect() as conn:
        if _row(conn, runbook_id) is None:
            raise _missing(runbook_id)
        old = _version_row(conn, runbook_id, revision)
    if old is None:
        raise not_found(f"revision {revision} of runbook {runbook_id!r}", "revision-not-found")
    new, status, _ = _new_revision(
        engine, runbook_id, old.version, old.definition, old.source, actor, "rolled back", False
    )
    result = _result(runbook_id, new, status, old.version, [])
    result["rolled_back_to"] = revision
    return result


def four_eyes_refusal(runbook_id: str, revision: int, actor: str) -> ProblemError:
    return ProblemError(
        403,
        f"{actor} authored revision {revision} of runbook {runbook_id!r} and may not approve it "
        "(four eyes): another admin must approve it",
        slug="four-eyes",
        title="Approval by the author refused",
    )


def _decide(
    conn: Connection, runbook_id: str, revision: int, action: str, actor: str, author: Any, reason: Any
) -> None:
    conn.execute(
        insert(runbook_decisions).values(
            runbook_id=runbook_id,
            revision=revision,
            action=action,
            actor=actor,
            author=author,
            reason=reason,
            at=utcnow(),
        )
    )


def set_status(
    engine: Engine,
    runbook_id: str,
    status: str,
    actor: str | None = None,
    *,
    installer: bool = False,
) -> dict[str, Any]:
    """Approve or deprecate the current revision. With an `actor`, an approval is held to four
    eyes (the revision's author may not approve it, unless `installer`: rb up's system identity
    approving what it registered itself) and recorded with approver and author, a refusal too."""
    refused: ProblemError | None = None
    with engine.begin() as conn:
        rb = _row(conn, runbook_id)
        if rb is None:
            raise _missing(runbook_id)
        if rb.status == DEPRECATED and status != DEPRECATED:
            raise _deprecated(runbook_id, "approved")
        version = _version_row(conn, runbook_id, rb.current_revision)
        author = version.created_by if version is not None else None
        reason = None
        if status == APPROVED and actor is not None and rb.status != APPROVED and author == actor:
            if installer:
                reason = INSTALLER_REASON
            else:
                refused = four_eyes_refusal(runbook_id, rb.current_revision, actor)
        if refused is None and rb.status != status:
            conn.execute(
                update(runbooks).where(runbooks.c.id == runbook_id).values(status=status, updated_at=utcnow())
            )
            if actor is not None:
                action = "approved" if status == APPROVED else status.lower()
                _decide(conn, runbook_id, rb.current_revision, action, actor, author, reason)
    if refused is not None:
        # Recorded in a transaction of its own: the refusal stays on record.
        with engine.begin() as conn:
            _decide(
                conn, runbook_id, rb.current_revision, "approval_refused", str(actor), author, "four eyes"
            )
        raise refused
    out: dict[str, Any] = {
        "id": runbook_id,
        "revision": rb.current_revision,
        "status": status,
        "version": version.version if version is not None else None,
    }
    if status == APPROVED and actor is not None:
        out["author"] = author
        out["approved_by"] = actor if rb.status != APPROVED else None
        if reason is not None:
            out["reason"] = reason
    return out


def decisions(engine: Engine, runbook_id: str) -> list[dict[str, Any]]:
    """The lifecycle record of a runbook, oldest first."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(runbook_decisions)
            .where(runbook_decisions.c.runbook_id == runbook_id)
            .order_by(runbook_decisions.c.id)
        ).all()
    return [
        {
            "revision": r.revision,
            "action": r.action,
            "actor": r.actor,
            "author": r.author,
            "reason": r.reason,
            "at": iso(r.at),
        }
        for r in rows
    ]


def remove(engine: Engine, runbook_id: str) -> None:
    with engine.begin() as conn:
        if _row(conn, runbook_id) is None:
            raise _missing(runbook_id)
        conn.execute(delete(runbook_versions).where(runbook_versions.c.runbook_id == runbook_id))
        conn.execute(delete(runbooks).where(runbooks.c.id == runbook_id))


def get(engine: Engine, runbook_id: str) -> dict[str, Any]:
    with engine.connect() as conn:
        rb = _row(conn, runbook_id)
        if rb is None:
            raise _missing(runbook_id)
        version = _version_row(conn, runbook_id, rb.current_revision)
    out = _summary(rb, version)
    out["definition"] = version.definition if version is not None else None
    out["source"] = version.source if version is not None else None
    return out


def current(engine: Engine, runbook_id: str) -> Current:
    with engine.connect() as conn:
        rb = _row(conn, runbook_id)
        if rb is None:
            raise _missing(runbook_id)
        version = _version_row(conn, runbook_id, rb.current_revision)
    if version is None:
        raise _missing(runbook_id)
    return Current(rb.id, rb.status, rb.current_revision, version.definition)


def list_runbooks(
    engine: Engine,
    *,
    status: str | None,
    tag: str | None,
    limit: int,
    offset: int,
    visible: Any = None,
) -> dict[str, Any]:
    """A page of runbooks; `visible`: a WHERE clause on `runbooks` (team scope), None for all."""
    joined = runbooks.outerjoin(
        runbook_versions,
        and_(
            runbook_versions.c.runbook_id == runbooks.c.id,
            runbook_versions.c.revision == runbooks.c.current_revision,
        ),
    )
    query = select(runbooks, runbook_versions.c.version, runbook_versions.c.definition).select_from(joined)
    if status:
        query = query.where(runbooks.c.status == status)
    if visible is not None:
        query = query.where(visible)
    query = query.order_by(runbooks.c.id)
    with engine.connect() as conn:
        if tag is None:
            count_query = select(func.count()).select_from(runbooks)
            if status:
                count_query = count_query.where(runbooks.c.status == status)
            if visible is not None:
                count_query = count_query.where(visible)
            total = conn.execute(count_query).scalar_one()
            rows = list(conn.execute(query.limit(limit).offset(offset)))
        else:
            matching = [r for r in conn.execute(query) if tag in ((r.definition or {}).get("tags") or [])]
            total = len(matching)
            rows = matching[offset : offset + limit]
    items = [_summary(r, r) for r in rows]
    return {"items": items, "total": total, "limit": limit, "offset": offset}


def versions(engine: Engine, runbook_id: str) -> dict[str, Any]:
    with engine.connect() as conn:
        rb = _row(conn, runbook_id)
        if rb is None:
            raise _missing(runbook_id)
        rows = conn.execute(
            select(
                runbook_versions.c.revision,
                runbook_versions.c.version,
                runbook_versions.c.created_at,
                runbook_versions.c.created_by,
            )
            .where(runbook_versions.c.runbook_id == runbook_id)
            .order_by(runbook_versions.c.revision)
        ).all()
    items = [
        {
            "revision": r.revision,
            "version": r.version,
            "created_at": iso(r.created_at),
            "created_by": r.created_by,
            "current": r.revision == rb.current_revision,
        }
        for r in rows
    ]
    return {
        "id": runbook_id,
        "current_revision": rb.current_revision,
        "items": items,
        "decisions": decisions(engine, runbook_id),
    }


def version(engine: Engine, runbook_id: str, revision: int) -> dict[str, Any]:
    with engine.connect() as conn:
        rb = _row(conn, runbook_id)
        if rb is None:
            raise _missing(runbook_id)
        row = _version_row(conn, runbook_id, revision)
    if row is None:
        raise not_found(f"revision {revision} of runbook {runbook_id!r}", "revision-not-found")
    return {
        "id": runbook_id,
        "revision": row.revision,
        "version": row.version,
        "current": row.revision == rb.current_revision,
        "created_at": iso(row.created_at),
        "created_by": row.created_by,
        "definition": row.definition,
        "source": row.source,
    }
