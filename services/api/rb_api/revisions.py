"""What `execute` reads of the registry: the runbook's row (status, current revision, team) on every
request, in one query, and the parsed `Runbook` of that revision from a cache.

A stored revision is written once and never edited (`runbook_versions` rows are only inserted, or
deleted with their runbook), so its parsed definition can be kept. The cache key includes the
version row's `created_at`: a runbook deleted and registered again reuses revision numbers with
other definitions, and is parsed again. Status, current revision and team are read on every request,
so an approval, a deprecation, a rollback or a new revision counts for the very next execute, in
every API process.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from threading import Lock

from pydantic import ValidationError
from sqlalchemy import Engine, and_, bindparam, select

from rb_api.problems import ProblemError, not_found
from rb_common.model import Runbook
from rb_store.tables import runbook_versions, runbooks

# Revisions kept parsed at most (least recently used go first).
MAX_REVISIONS = 256


@dataclass(frozen=True)
class Live:
    """A registered runbook as of now: what execute checks before it parses anything."""

    id: str
    status: str
    revision: int
    team: str | None
    stamp: datetime | None  # the current revision's created_at; None: the version row is missing


# Built once: building a statement (and its cache key) costs more than running it on SQLite.
_LIVE = (
    select(
        runbooks.c.id,
        runbooks.c.status,
        runbooks.c.current_revision,
        runbooks.c.team,
        runbook_versions.c.created_at,
    )
    .select_from(
        runbooks.outerjoin(
            runbook_versions,
            and_(
                runbook_versions.c.runbook_id == runbooks.c.id,
                runbook_versions.c.revision == runbooks.c.current_revision,
            ),
        )
    )
    .where(runbooks.c.id == bindparam("runbook_id"))
)


def live(engine: Engine, runbook_id: str) -> Live | None:
    """The runbook's row joined with its current version's stamp (no definition), or None."""
    with engine.connect() as conn:
        row = conn.execute(_LIVE, {"runbook_id": runbook_id}).first()
    if row is None:
        return None
    return Live(row.id, row.status, row.current_revision, row.team, row.created_at)


class RevisionCache:
    """Parsed runbooks by (id, revision, created_at); thread-safe (lookups run in the thread pool)."""

    def __init__(self, size: int = MAX_REVISIONS) -> None:
        self.size = size
        self._entries: OrderedDict[tuple[str, int, datetime | None], Runbook] = OrderedDict()
        self._lock = Lock()
        self._loading: dict[tuple[str, int, datetime | None], Lock] = {}  # revisions being parsed

    def runbook(self, engine: Engine, found: Live) -> Runbook:
        """The revision's definition as a Runbook; 409 if the stored definition no longer loads.
        Concurrent misses on one revision parse it once: the first reads and parses, the others
        wait for it and take its result (a burst of executes right after an approval, or after
        the API started, would otherwise parse it once per request, all holding the GIL)."""
        key = (found.id, found.revision, found.stamp)
        cached = self._get(key)
        if cached is not None:
            return cached
        with self._lock:
            loading = self._loading.setdefault(key, Lock())
        try:
            with loading:
                cached = self._get(key)
                if cached is not None:
                    return cached
                return self._load(engine, found, key)
        finally:
            with self._lock:
                if self._loading.get(key) is loading and not loading.locked():
                    del self._loading[key]

    def _get(self, key: tuple[str, int, datetime | None]) -> Runbook | None:
        with self._lock:
            cached = self._entries.get(key)
            if cached is not None:
                self._entries.move_to_end(key)
            return cached

    def _load(self, engine: Engine, found: Live, key: tuple[str, int, datetime | None]) -> Runbook:
        with engine.connect() as conn:
            row = conn.execute(
                select(runbook_versions.c.definition, runbook_versions.c.created_at).where(
                    and_(
                        runbook_versions.c.runbook_id == found.id,
                        runbook_versions.c.revision == found.revision,
                    )
                )
            ).first()
        if row is None:  # deleted meanwhile
            raise not_found(f"runbook {found.id!r}", "runbook-not-found")
        try:
            runbook = Runbook.model_validate(row.definition)
        except ValidationError as exc:
            raise ProblemError(
                409,
                f"the stored definition of revision {found.revision} no longer loads: {exc.errors()[0]['msg']}; "
                "PUT a corrected definition",
                slug="stale-definition",
            ) from None
        if row.created_at == found.stamp:  # the row read is the one `found` names
            with self._lock:
                self._entries[key] = runbook
                self._entries.move_to_end(key)
                while len(self._entries) > self.size:
                    self._entries.popitem(last=False)
        return runbook
