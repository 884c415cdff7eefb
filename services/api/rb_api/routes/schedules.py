"""Cron schedules: list with next fire times, pause and resume."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from rb_api import schedules
from rb_api.dbutil import in_thread
from rb_api.deps import ActorDep, ServicesDep
from rb_common.registry_events import announce

router = APIRouter(prefix="/api/v1/schedules", tags=["schedules"])

RunbookId = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9-]*$", max_length=100)]
Index = Annotated[int, Path(ge=0, le=1000)]


@router.get("", summary="Cron schedules of approved runbooks, with their next fire times")
async def list_schedules(svc: ServicesDep) -> dict[str, Any]:
    return {"items": await in_thread(schedules.list_schedules, svc.engine)}


@router.post("/{runbook_id}/{index}/pause", summary="Stop a schedule from firing")
async def pause(runbook_id: RunbookId, index: Index, svc: ServicesDep, actor: ActorDep) -> dict[str, Any]:
    result = await in_thread(schedules.set_paused, svc.engine, runbook_id, index, True, actor)
    await announce(svc.bus, runbook_id, "schedule_paused", trigger_index=index, actor=actor)
    return result


@router.post("/{runbook_id}/{index}/resume", summary="Let a paused schedule fire again")
async def resume(runbook_id: RunbookId, index: Index, svc: ServicesDep, actor: ActorDep) -> dict[str, Any]:
    result = await in_thread(schedules.set_paused, svc.engine, runbook_id, index, False, actor)
    await announce(svc.bus, runbook_id, "schedule_resumed", trigger_index=index, actor=actor)
    return result
