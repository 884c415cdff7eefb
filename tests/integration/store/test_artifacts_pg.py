"""The artifact store on PostgreSQL large objects: the same contract as the filesystem one,
against the real server."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from rb_common.errors import RbError
from rb_common.settings import Settings
from rb_engine.artifacts import ArtifactMissing, FileArtifactStore, artifact_store, blob_digest, verify
from rb_store.artifacts import PgArtifactStore
from rb_store.db import make_engine

pytestmark = pytest.mark.integration


def test_blobs_round_trip_with_their_owners(pg_engine: Engine) -> None:
    store = PgArtifactStore(pg_engine)
    data = b"\x89PNG" + bytes(range(256)) * 400  # ~100 KB, binary
    digest = store.put(data)
    assert digest == blob_digest(data) and store.exists(digest)
    assert store.get(digest) == data and verify(store, digest) is None
    store.link(digest, "exec-b")
    store.link(digest, "exec-a")
    store.link(digest, "exec-a")
    assert store.owners(digest) == ["exec-a", "exec-b"]
    gone = blob_digest(b"never stored")
    assert not store.exists(gone) and store.owners(gone) == []
    with pytest.raises(ArtifactMissing):
        store.get(gone)
    with pytest.raises(ValueError):
        store.get("sha256:../x")


def test_writing_a_blob_twice_keeps_one_large_object(pg_engine: Engine) -> None:
    store = PgArtifactStore(pg_engine)
    data = b"same bytes from many workers " * 50
    before = _large_objects(pg_engine)
    with ThreadPoolExecutor(8) as pool:
        digests = set(pool.map(lambda _: store.put(data), range(16)))
    assert digests == {blob_digest(data)}
    assert _large_objects(pg_engine) == before + 1


def test_a_tampered_large_object_is_named(pg_engine: Engine) -> None:
    store = PgArtifactStore(pg_engine)
    digest = store.put(b"the recorded screenshot")
    with pg_engine.begin() as conn:
        oid = conn.execute(text("SELECT oid FROM artifacts WHERE digest = :d"), {"d": digest}).scalar_one()
        conn.execute(text("SELECT lo_put(CAST(:oid AS oid), 0, :b)"), {"oid": oid, "b": b"THE"})
    problem = verify(store, digest)
    assert problem == f"artifact {digest} was tampered with: its stored bytes hash to {blob_digest(b'THE recorded screenshot')}"


def test_the_backend_is_chosen_by_settings(pg_database_url: str, pg_engine: Engine, tmp_path: Path) -> None:
    chosen = artifact_store(Settings(artifacts_backend="postgres", database_url=pg_database_url))
    assert isinstance(chosen, PgArtifactStore)
    digest = chosen.put(b"by settings")
    assert PgArtifactStore(pg_engine).get(digest) == b"by settings"
    assert isinstance(artifact_store(Settings(home=tmp_path)), FileArtifactStore)
    sqlite = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with pytest.raises(RbError, match="needs RB_DATABASE_URL to name a PostgreSQL database"):
        PgArtifactStore(sqlite)


def _large_objects(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM pg_largeobject_metadata")).scalar_one())
