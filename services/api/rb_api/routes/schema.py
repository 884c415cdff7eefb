"""/api/v1/schema/runbook: the JSON Schema of runbook files (rb_common.runbook_schema), the same
`rb schema` prints; the console's editor builds its step forms from it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from rb_api.auth import Viewer
from rb_common.runbook_schema import runbook_json_schema

router = APIRouter(prefix="/api/v1/schema", tags=["authoring"])


@router.get("/runbook", summary="The JSON Schema of runbook files")
async def runbook_schema(_: Viewer) -> dict[str, Any]:
    return runbook_json_schema()
