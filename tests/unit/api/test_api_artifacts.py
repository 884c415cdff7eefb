"""GET /api/v1/artifacts/{digest}: the bytes to whoever may read an execution that recorded them;
404 for other teams, unknown blobs and blobs no recorded execution names; 409 for a tampered one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from rb_engine.artifacts import FileArtifactStore, blob_digest

ART = "/api/v1/artifacts"
PNG = b"\x89PNG\r\n\x1a\n" + b"pretend pixels"
YAML = {"content-type": "application/yaml"}


def store(tmp_path: Path) -> FileArtifactStore:
    return FileArtifactStore(tmp_path / ".rb" / "artifacts")  # the app's RB_HOME (conftest)


async def test_served_to_readers_of_its_execution_only(
    tmp_path: Path, client: httpx.AsyncClient, executions: Any, make_key: Any, make_yaml: Any
) -> None:
    scoped = "t-art-payments"
    member = {"Authorization": f"Bearer {await make_key('m', 'viewer', teams=['payments'])}"}
    outsider = {"Authorization": f"Bearer {await make_key('o', 'viewer', teams=['search'])}"}
    created = await client.post("/api/v1/runbooks", content=make_yaml(scoped, extra="team: payments\n"), headers=YAML)
    assert created.status_code == 201, created.text
    run = await executions.run(scoped)
    await executions.publish(run)
    blobs = store(tmp_path)
    digest = blobs.put(PNG)
    blobs.link(digest, run[0].execution_id)

    r = await client.get(f"{ART}/{digest}", headers=member)
    assert r.status_code == 200, r.text
    assert r.content == PNG and r.headers["content-type"] == "image/png"
    assert r.headers["etag"] == f'"{digest}"'
    hidden = await client.get(f"{ART}/{digest}", headers=outsider)
    assert hidden.status_code == 404 and hidden.headers["content-type"].startswith("application/problem+json")

    # a blob linked only to an execution nobody recorded: nobody may read it
    orphan = blobs.put(b"orphan")
    blobs.link(orphan, "0" * 32)
    assert (await client.get(f"{ART}/{orphan}")).status_code == 404
    assert (await client.get(f"{ART}/{blob_digest(b'never stored')}")).status_code == 404

    # tampered: never served
    blobs.path(digest).write_bytes(PNG + b"!")
    tampered = await client.get(f"{ART}/{digest}", headers=member)
    assert tampered.status_code == 409 and "does not match its digest" in tampered.json()["detail"]


async def test_a_malformed_digest_is_a_4xx_problem(client: httpx.AsyncClient) -> None:
    for bad in ("sha256:xyz", "md5:" + "0" * 32, "sha256:" + "A" * 64, "..%2F..%2Fetc%2Fpasswd"):
        r = await client.get(f"{ART}/{bad}")
        assert 400 <= r.status_code < 500 and r.status_code != 401, (bad, r.status_code)
