"""Cron schedules: list with next fire times, pause and resume."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from rb_api import registry, schedules
from rb_api.auth import Operator, Viewer
from rb_api.dbutil import in_thread
from rb_api.deps import ServicesDep
from rb_api.problems import problem_responses
from rb_api.scope import require_runbook
from rb_common.registry_events import announce

router = APIRouter(prefix="/api/v1/schedules", tags=["schedules"])

RunbookId = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9-]*$", max_length=100)]
Index = Annotated[int, Path(ge=0, le=1000)]
_PROBLEMS = problem_responses(401, 403, 404, 415, 422)


async def _announce(svc: ServicesDep, runbook_id: str, change: str, index: int, actor: str) -> None:
    # With the runbook's revision and status: the bucket keeps only the last value per runbook,
    # and the executor reads it when a run starts (rb_executor.service.admission).
    current = await in_thread(registry.current, svc.engine, runbook_id)
    await announce(
        svc.bus,
        runbook_id,
        change,
        trigger_index=index,
        revision=current.revision,
        status=current.status,
        actor=actor,
    )


@router.get(
    "", summary="Cron schedules of approved runbooks, with their next fire times", responses=_PROBLEMS
)
async def list_schedules(svc: ServicesDep, who: Viewer) -> dict[str, Any]:
    items = await in_thread(schedules.list_schedules, svc.engine)
    return {"items": [item for item in items if who.sees_team(item.get("team"))]}


@router.post("/{runbook_id}/{index}/pause", summary="Stop a schedule from firing", responses=_PROBLEMS)
async def pause(runbook_id: RunbookId, index: Index, svc: ServicesDep, who: Operator) -> dict[str, Any]:
    await require_runbook(svc, who, runbook_id)
    result = await in_thread(schedules.set_paused, svc.engine, runbook_id, index, True, who.actor)
    await _announce(svc, runbook_id, "schedule_paused", index, who.actor)
    return result


@router.post("/{runbook_id}/{index}/resume", summary="Let a paused schedule fire again", responses=_PROBLEMS)
async def resume(runbook_id: RunbookId, index: Index, svc: ServicesDep, who: Operator) -> dict[str, Any]:
    await require_runbook(svc, who, runbook_id)
    result = await in_thread(schedules.set_paused, svc.engine, runbook_id, index, False, who.actor)
    await _announce(svc, runbook_id, "schedule_resumed", index, who.actor)
    return result
