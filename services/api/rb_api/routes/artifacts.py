"""/api/v1/artifacts/{digest}: a content-addressed blob (a screenshot, a diff image) by its digest.

Whoever may read an execution that recorded the blob may read it (role viewer and the
execution's team scope, rb_api.scope); for anyone else, and for blobs no known execution
recorded, it does not exist (404). A stored blob whose bytes no longer hash to its digest is
never served (409).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response

from rb_api import executions
from rb_api.auth import Viewer
from rb_api.dbutil import in_thread
from rb_api.deps import ServicesDep
from rb_api.problems import ProblemError, not_found, problem_responses
from rb_api.scope import execution_visible
from rb_engine.artifacts import ArtifactMissing, artifact_store, blob_digest
from rb_store import artifacts as _pg_backend  # noqa: F401 (registers RB_ARTIFACTS_BACKEND=postgres)

router = APIRouter(prefix="/api/v1/artifacts", tags=["artifacts"])

Digest = Annotated[str, Path(pattern=r"^sha256:[0-9a-f]{64}$", description="sha256:<64 hex> of the bytes")]
_PROBLEMS = problem_responses(401, 403, 404, 409, 422)
_PNG = b"\x89PNG\r\n\x1a\n"


@router.get(
    "/{digest}",
    summary="The blob's bytes (image/png for screenshots), to whoever may read its execution",
    response_class=Response,
    responses={200: {"content": {"image/png": {}, "application/octet-stream": {}}}, **_PROBLEMS},
)
async def get_artifact(digest: Digest, svc: ServicesDep, who: Viewer) -> Response:
    store = artifact_store(svc.settings)
    for execution_id in await in_thread(store.owners, digest):
        if await executions.recorded(svc, execution_id) and await execution_visible(svc, who, execution_id):
            break
    else:
        raise not_found(f"artifact {digest}")
    try:
        data = await in_thread(store.get, digest)
    except ArtifactMissing:
        raise not_found(f"artifact {digest}") from None
    if blob_digest(data) != digest:
        raise ProblemError(
            409, f"the stored artifact {digest} does not match its digest", slug="artifact-tampered"
        )
    return Response(
        data,
        media_type="image/png" if data.startswith(_PNG) else "application/octet-stream",
        headers={
            "Cache-Control": "private, max-age=31536000, immutable",
            "ETag": f'"{digest}"',
            "X-Content-Type-Options": "nosniff",
        },
    )
