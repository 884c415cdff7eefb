"""The artifact store in an S3-compatible bucket (RB_ARTIFACTS_BACKEND=s3).

A blob is the object `<prefix><hex>`; the executions that recorded it are empty objects
`<prefix>refs/<hex>/<execution id>`. Objects are written once (an existing one is kept).
"""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from rb_common.errors import RbError
from rb_common.settings import Settings
from rb_engine.artifacts import ArtifactMissing, blob_digest, valid_digest

_MISSING = {"404", "NoSuchKey", "NotFound"}


def _hex(digest: str) -> str:
    if not valid_digest(digest):
        raise ValueError(f"not an artifact digest: {digest!r} (expected sha256:<64 hex>)")
    return digest.split(":", 1)[1]


class S3ArtifactStore:
    def __init__(self, client: Any, bucket: str, prefix: str = "rb-artifacts/") -> None:
        self.client, self.bucket, self.prefix = client, bucket, prefix

    def _key(self, digest: str) -> str:
        return self.prefix + _hex(digest)

    def put(self, data: bytes) -> str:
        digest = blob_digest(data)
        if not self.exists(digest):
            self.client.put_object(
                Bucket=self.bucket, Key=self._key(digest), Body=data, ContentType="application/octet-stream"
            )
        return digest

    def get(self, digest: str) -> bytes:
        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=self._key(digest))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _MISSING:
                raise ArtifactMissing(digest) from None
            raise
        return bytes(answer["Body"].read())

    def exists(self, digest: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(digest))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _MISSING:
                return False
            raise
        return True

    def link(self, digest: str, execution_id: str) -> None:
        if not execution_id or "/" in execution_id:
            raise ValueError(f"not an execution id: {execution_id!r}")
        key = f"{self.prefix}refs/{_hex(digest)}/{execution_id}"
        self.client.put_object(Bucket=self.bucket, Key=key, Body=b"")

    def owners(self, digest: str) -> list[str]:
        start = f"{self.prefix}refs/{_hex(digest)}/"
        names: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=start):
            names += [item["Key"][len(start) :] for item in page.get("Contents", [])]
        return sorted(names)


@cache
def _client(endpoint: str | None, region: str | None, key_id: str | None, secret: str | None) -> Any:
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 5, "mode": "standard"}, s3={"addressing_style": "path"}),
    )


def s3_artifact_store(settings: Settings) -> S3ArtifactStore:
    if not settings.artifacts_s3_bucket:
        raise RbError("RB_ARTIFACTS_BACKEND=s3 needs RB_ARTIFACTS_S3_BUCKET")
    secret = settings.artifacts_s3_secret_access_key
    client = _client(
        settings.artifacts_s3_endpoint,
        settings.artifacts_s3_region,
        settings.artifacts_s3_access_key_id,
        secret.get_secret_value() if secret else None,
    )
    return S3ArtifactStore(client, settings.artifacts_s3_bucket, settings.artifacts_s3_prefix)
