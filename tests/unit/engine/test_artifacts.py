"""The filesystem artifact store: content addressing, owners, tampering."""

from __future__ import annotations

from pathlib import Path

import pytest

from rb_engine.artifacts import ArtifactMissing, FileArtifactStore, blob_digest, verify


def test_blobs_are_named_by_their_sha256_and_written_once(tmp_path: Path) -> None:
    store = FileArtifactStore(tmp_path)
    digest = store.put(b"pixels")
    assert digest == blob_digest(b"pixels") and digest.startswith("sha256:") and len(digest) == 71
    assert store.put(b"pixels") == digest and store.get(digest) == b"pixels"
    assert verify(store, digest) is None
    assert not list(tmp_path.rglob(".tmp-*"))


def test_owners_are_the_executions_linked_to_a_blob(tmp_path: Path) -> None:
    store = FileArtifactStore(tmp_path)
    digest = store.put(b"x")
    store.link(digest, "exec-b")
    store.link(digest, "exec-a")
    store.link(digest, "exec-a")
    assert store.owners(digest) == ["exec-a", "exec-b"]
    assert store.owners(blob_digest(b"other")) == []
    with pytest.raises(ValueError):
        store.link(digest, "../escape")


def test_missing_and_tampered_blobs_are_named(tmp_path: Path) -> None:
    store = FileArtifactStore(tmp_path)
    digest = store.put(b"original")
    store.path(digest).write_bytes(b"edited")
    assert verify(store, digest) == f"artifact {digest} was tampered with: its stored bytes hash to {blob_digest(b'edited')}"
    gone = blob_digest(b"never")
    assert verify(store, gone) == f"artifact {gone} is missing from the store"
    with pytest.raises(ArtifactMissing):
        store.get(gone)
    with pytest.raises(ValueError):
        store.get("sha256:../../etc/passwd")
