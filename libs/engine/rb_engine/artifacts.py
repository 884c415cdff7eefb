"""Artifacts: content-addressed blobs (screenshots, diff images) that events name but never hold.

A blob's name is `sha256:<hex>` of its bytes. Events carry the digest, size and, for images, the
dimensions; the bytes live in an `ArtifactStore`. The filesystem backend keeps them under
`RB_ARTIFACTS_DIR` (default `RB_HOME/artifacts`) as `<hex[:2]>/<hex>`. A stored blob whose bytes
no longer hash to its name has been tampered with: `verify` says so.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from rb_common.errors import RbError
from rb_common.settings import Settings

_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


class ArtifactMissing(LookupError):
    """No blob with this digest in the store."""


def blob_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def valid_digest(digest: str) -> bool:
    return bool(_DIGEST.match(digest))


@dataclass(frozen=True)
class ArtifactRef:
    """What an event records about a blob: never its bytes."""

    digest: str
    size: int
    media_type: str = "image/png"
    width: int | None = None
    height: int | None = None

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"digest": self.digest, "size": self.size, "media_type": self.media_type}
        if self.width is not None:
            data["width"], data["height"] = self.width, self.height
        return data


class ArtifactStore(Protocol):
    def put(self, data: bytes) -> str: ...

    def get(self, digest: str) -> bytes: ...

    def exists(self, digest: str) -> bool: ...

    def link(self, digest: str, execution_id: str) -> None:
        """Note that `execution_id` refers to the blob (who may read it follows from that)."""
        ...

    def owners(self, digest: str) -> list[str]: ...


class FileArtifactStore:
    """Blobs as files: written once (atomically), never rewritten."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, digest: str) -> Path:
        if not valid_digest(digest):
            raise ValueError(f"not an artifact digest: {digest!r} (expected sha256:<64 hex>)")
        hexa = digest.split(":", 1)[1]
        return self.root / hexa[:2] / hexa

    def put(self, data: bytes) -> str:
        digest = blob_digest(data)
        path = self.path(digest)
        if path.exists():
            return digest
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return digest

    def get(self, digest: str) -> bytes:
        try:
            return self.path(digest).read_bytes()
        except FileNotFoundError:
            raise ArtifactMissing(digest) from None

    def exists(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def _refs(self, digest: str) -> Path:
        return self.root / "refs" / self.path(digest).name

    def link(self, digest: str, execution_id: str) -> None:
        if not execution_id or "/" in execution_id or execution_id.startswith("."):
            raise ValueError(f"not an execution id: {execution_id!r}")
        refs = self._refs(digest)
        refs.mkdir(parents=True, exist_ok=True)
        (refs / execution_id).touch()

    def owners(self, digest: str) -> list[str]:
        refs = self._refs(digest)
        return sorted(p.name for p in refs.iterdir()) if refs.is_dir() else []


# Backends by RB_ARTIFACTS_BACKEND name. `postgres` lives in rb_store (a layer above) and
# registers itself when rb_store.artifacts is imported (the API, the executor and the CLI do).
def _s3(settings: Settings) -> ArtifactStore:
    from rb_engine.artifacts_s3 import s3_artifact_store  # boto3 only when configured

    return s3_artifact_store(settings)


BACKENDS: dict[str, Callable[[Settings], ArtifactStore]] = {
    "file": lambda settings: FileArtifactStore(settings.artifacts_path),
    "s3": _s3,
}


def register_backend(name: str, factory: Callable[[Settings], ArtifactStore]) -> None:
    BACKENDS[name] = factory


def artifact_store(settings: Settings) -> ArtifactStore:
    """The configured store (RB_ARTIFACTS_BACKEND)."""
    factory = BACKENDS.get(settings.artifacts_backend)
    if factory is None:
        raise RbError(f"RB_ARTIFACTS_BACKEND={settings.artifacts_backend}: no such backend in this process")
    return factory(settings)


def verify(store: ArtifactStore, digest: str) -> str | None:
    """None if the stored blob is intact, else what is wrong with it."""
    try:
        data = store.get(digest)
    except ArtifactMissing:
        return f"artifact {digest} is missing from the store"
    actual = blob_digest(data)
    if actual != digest:
        return f"artifact {digest} was tampered with: its stored bytes hash to {actual}"
    return None
