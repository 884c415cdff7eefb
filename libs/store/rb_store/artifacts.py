"""The artifact store on PostgreSQL large objects (RB_ARTIFACTS_BACKEND=postgres).

A blob's bytes are one large object (`lo_from_bytea`), named in `artifacts` by its digest;
`artifact_refs` notes which executions recorded it. Writing a blob twice keeps the first copy
(the loser's large object is unlinked in the same transaction). Importing this module registers
the backend with rb_engine.artifacts.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache

from sqlalchemy import Engine, select, text
from sqlalchemy.dialects.postgresql import insert

from rb_common.errors import RbError
from rb_common.settings import Settings
from rb_engine.artifacts import ArtifactMissing, blob_digest, register_backend, valid_digest
from rb_store.db import database_url, make_engine
from rb_store.tables import artifact_refs, artifacts


def _checked(digest: str) -> str:
    if not valid_digest(digest):
        raise ValueError(f"not an artifact digest: {digest!r} (expected sha256:<64 hex>)")
    return digest


class PgArtifactStore:
    def __init__(self, engine: Engine) -> None:
        if engine.dialect.name != "postgresql":
            raise RbError("RB_ARTIFACTS_BACKEND=postgres needs RB_DATABASE_URL to name a PostgreSQL database")
        self.engine = engine

    def put(self, data: bytes) -> str:
        digest = blob_digest(data)
        if self.exists(digest):
            return digest
        with self.engine.begin() as conn:
            oid = conn.execute(text("SELECT lo_from_bytea(0, :data)::bigint"), {"data": data}).scalar_one()
            inserted = conn.execute(
                insert(artifacts)
                .values(digest=digest, oid=oid, size=len(data), created_at=datetime.now(UTC))
                .on_conflict_do_nothing(index_elements=["digest"])
                .returning(artifacts.c.digest)
            ).first()
            if inserted is None:  # written meanwhile by another writer: keep theirs
                conn.execute(text("SELECT lo_unlink(CAST(:oid AS oid))"), {"oid": oid})
        return digest

    def get(self, digest: str) -> bytes:
        with self.engine.connect() as conn:
            data = conn.execute(
                text("SELECT lo_get(CAST(oid AS oid)) FROM artifacts WHERE digest = :digest"),
                {"digest": _checked(digest)},
            ).scalar_one_or_none()
        if data is None:
            raise ArtifactMissing(digest)
        return bytes(data)

    def exists(self, digest: str) -> bool:
        with self.engine.connect() as conn:
            found = conn.execute(select(artifacts.c.digest).where(artifacts.c.digest == _checked(digest)))
            return found.first() is not None

    def link(self, digest: str, execution_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                insert(artifact_refs)
                .values(digest=_checked(digest), execution_id=execution_id)
                .on_conflict_do_nothing()
            )

    def owners(self, digest: str) -> list[str]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(artifact_refs.c.execution_id)
                .where(artifact_refs.c.digest == _checked(digest))
                .order_by(artifact_refs.c.execution_id)
            )
            return [row[0] for row in rows]


@cache
def _engine(url: str) -> Engine:
    return make_engine(url)  # one pool per database for the process's lifetime


def pg_artifact_store(settings: Settings) -> PgArtifactStore:
    return PgArtifactStore(_engine(database_url(settings)))


register_backend("postgres", pg_artifact_store)
