"""The JSON answers of the API as OpenAPI documents them: documentation-only models.

The routes build their answers as dicts (rb_api.reads, .registry, .executions); these models
declare the fields clients rely on, with their status vocabularies as enums (the statuses of
`rb_common.statuses`, the registry's, the events' types). More fields may be present
(`extra="allow"`). A route names its model with `answers(Model)`, so FastAPI documents it
without filtering the answer; schemathesis checks real answers against it
(tests/integration/api/test_api_schemathesis.py).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from rb_common.events import EventType
from rb_common.statuses import ExecutionStatus, StepStatus

RunbookStatus = Literal["DRAFT", "APPROVED", "DEPRECATED"]
ControlAction = Literal["cancel", "pause", "resume"]
AlertStatus = Literal["firing", "resolved"]


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


LOCATION = {
    "Location": {"description": "where the resource is", "required": True, "schema": {"type": "string"}}
}


def answers(
    model: type[BaseModel], status: int = 200, description: str = "", *, location: bool = False
) -> dict[int | str, Any]:
    """A route's `responses=` entry for its success answer (documented, never filtered);
    `location`: the answer carries a Location header."""
    entry: dict[str, Any] = {"model": model, "description": description or "OK"}
    if location:
        entry["headers"] = LOCATION
    return {status: entry}


# -- runbooks ---------------------------------------------------------------------------------


class RegistryChange(_Open):
    """What a create, revision, rollback, approval or deprecation leaves current."""

    id: str
    revision: int
    status: RunbookStatus


class RunbookSummary(_Open):
    id: str
    revision: int
    status: RunbookStatus
    tags: list[str]


class RunbookPage(_Open):
    items: list[RunbookSummary]
    total: int
    limit: int
    offset: int


class RunbookDetail(RunbookSummary):
    definition: dict[str, Any] | None
    source: str | None


class Queued(_Open):
    """An execution was requested; the executor queues it."""

    execution_id: str
    status: Literal[ExecutionStatus.QUEUED]


# -- executions -------------------------------------------------------------------------------


class ExecutionSummary(_Open):
    id: str
    runbook_id: str | None
    status: ExecutionStatus


class ExecutionPage(_Open):
    items: list[ExecutionSummary]
    total: int
    limit: int
    offset: int


class StepView(_Open):
    id: str
    status: StepStatus
    attempts: int


class ExecutionDetail(_Open):
    id: str
    runbook_id: str | None
    status: ExecutionStatus
    steps: list[StepView]


class RecordedEvent(_Open):
    id: str
    seq: int
    type: EventType


class EventList(_Open):
    execution_id: str
    items: list[RecordedEvent]


class StepLog(_Open):
    step_id: str
    status: StepStatus
    rollback_status: StepStatus | None = None


class StepLogList(_Open):
    execution_id: str
    items: list[StepLog]


class ControlAccepted(_Open):
    execution_id: str
    action: ControlAction
    command: str
    status: Literal["ACCEPTED"]


# -- alerts -----------------------------------------------------------------------------------


class AlertRecord(_Open):
    id: str
    source: str
    status: AlertStatus
    matched: bool


class AlertPage(_Open):
    items: list[AlertRecord]
    total: int
    limit: int
    offset: int
