"""The artifact store in an S3-compatible bucket, against moto's S3 server (a real HTTP peer on
loopback): the same contract as the filesystem and PostgreSQL stores."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest

from rb_common.errors import RbError
from rb_common.settings import Settings
from rb_engine.artifacts import ArtifactMissing, artifact_store, blob_digest, verify
from rb_engine.artifacts_s3 import S3ArtifactStore

pytestmark = pytest.mark.integration
MOTO = Path(sys.executable).parent / "moto_server"


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [str(MOTO), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    try:
        while True:  # until it answers (or gives up): the server's start is the event waited for
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.TransportError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.05)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture
def settings(s3_endpoint: str) -> Settings:
    bucket = f"rb-test-{uuid.uuid4().hex[:8]}"
    boto3.client(
        "s3", endpoint_url=s3_endpoint, region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s"
    ).create_bucket(Bucket=bucket)
    return Settings(
        artifacts_backend="s3",
        artifacts_s3_bucket=bucket,
        artifacts_s3_endpoint=s3_endpoint,
        artifacts_s3_region="us-east-1",
        artifacts_s3_access_key_id="k",
        artifacts_s3_secret_access_key="s",
    )


def test_blobs_round_trip_with_their_owners(settings: Settings) -> None:
    store = artifact_store(settings)
    assert isinstance(store, S3ArtifactStore)
    data = b"\x89PNG" + bytes(range(256)) * 400
    digest = store.put(data)
    assert digest == blob_digest(data) and store.exists(digest) and store.put(data) == digest
    assert store.get(digest) == data and verify(store, digest) is None
    store.link(digest, "exec-b")
    store.link(digest, "exec-a")
    assert store.owners(digest) == ["exec-a", "exec-b"]
    gone = blob_digest(b"never stored")
    assert not store.exists(gone) and store.owners(gone) == []
    with pytest.raises(ArtifactMissing):
        store.get(gone)
    assert verify(store, gone) == f"artifact {gone} is missing from the store"


def test_a_tampered_object_is_named(settings: Settings) -> None:
    store = artifact_store(settings)
    assert isinstance(store, S3ArtifactStore)
    digest = store.put(b"the recorded screenshot")
    store.client.put_object(Bucket=store.bucket, Key=store._key(digest), Body=b"something else")
    assert verify(store, digest) == (
        f"artifact {digest} was tampered with: its stored bytes hash to {blob_digest(b'something else')}"
    )


def test_a_bucket_is_required() -> None:
    with pytest.raises(RbError, match="needs RB_ARTIFACTS_S3_BUCKET"):
        artifact_store(Settings(artifacts_backend="s3"))
