"""GraphQL over the same code paths as REST: runbook and execution queries, execute and replay
mutations (strawberry)."""

from __future__ import annotations

from typing import Any, ClassVar, cast

import strawberry
from graphql import GraphQLError
from strawberry.fastapi import BaseContext, GraphQLRouter
from strawberry.permission import BasePermission
from strawberry.scalars import JSON

from rb_api import audit, executions, registry, triggering
from rb_api.dbutil import in_thread
from rb_api.deps import Services
from rb_api.problems import ProblemError
from rb_api.scope import execution_visible, registered_team, require_execution
from rb_common.identity import Identity, Role
from rb_common.statuses import ExecutionStatus


class Context(BaseContext):
    @property
    def services(self) -> Services:
        assert self.request is not None
        services: Services = self.request.app.state.services
        return services

    @property
    def identity(self) -> Identity | None:
        """Who is asking (rb_api.auth authenticated the request), None without credentials."""
        if self.request is None:
            return None
        found = getattr(self.request.state, "identity", None)
        return found if isinstance(found, Identity) else None


class _Needs(BasePermission):
    """A field needs an identity with `role`: UNAUTHENTICATED / FORBIDDEN GraphQL errors
    otherwise (HTTP 200, as GraphQL answers field errors)."""

    role: ClassVar[Role] = Role.ADMIN

    def has_permission(self, source: Any, info: strawberry.Info[Context, None], **kwargs: Any) -> bool:
        who = info.context.identity
        if who is None:
            raise GraphQLError(
                "authentication required: Authorization: Bearer <API key or token>",
                extensions={"code": "UNAUTHENTICATED", "status": 401},
            )
        if not who.has(self.role):
            raise GraphQLError(
                f"{who.actor} lacks the role {self.role.value!r}",
                extensions={"code": "FORBIDDEN", "status": 403},
            )
        return True


class NeedsViewer(_Needs):
    role = Role.VIEWER


class NeedsOperator(_Needs):
    role = Role.OPERATOR


def _who(info: strawberry.Info[Context, None]) -> Identity:
    who = info.context.identity
    assert who is not None  # the field's permission class checked it
    return who


@strawberry.type
class StepRun:
    id: str
    status: str
    attempts: int
    started_at: str | None
    completed_at: str | None
    outputs: JSON | None
    error: str | None


@strawberry.type
class RunbookExecution:
    id: str
    runbook_id: str
    runbook_version: str | None
    status: str
    started_at: str | None
    completed_at: str | None
    trigger: JSON | None
    kpis: JSON | None
    steps: list[StepRun]
    parent: JSON | None = None  # a sub-runbook's parent {execution_id, step_id, depth}
    children: JSON | None = None  # [{id, step_id, runbook_id, status}]

    @classmethod
    def of(cls, data: dict[str, Any]) -> RunbookExecution:
        steps = [
            StepRun(
                id=s["id"],
                status=s["status"],
                attempts=s.get("attempts") or 0,
                started_at=s.get("started_at"),
                completed_at=s.get("completed_at"),
                outputs=s.get("outputs"),
                error=s.get("error"),
            )
            for s in data.get("steps", [])
        ]
        return cls(
            id=data["id"],
            runbook_id=data["runbook_id"],
            runbook_version=data.get("runbook_version"),
            status=data["status"],
            started_at=data.get("started_at"),
            completed_at=data.get("completed_at"),
            trigger=data.get("trigger"),
            kpis=data.get("kpis"),
            steps=steps,
            parent=data.get("parent"),
            children=data.get("children"),
        )


@strawberry.type
class Runbook:
    id: str
    name: str
    version: str
    status: str
    revision: int
    definition: JSON


@strawberry.type
class ExecutionTicket:
    execution_id: str
    status: str


@strawberry.type
class Deviation:
    step: str | None
    field: str
    recorded: JSON | None
    replayed: JSON | None
    seq: int | None


@strawberry.type
class ReplayReport:
    execution_id: str
    verified: bool
    deviations: list[Deviation]
    result: JSON


def _problem(exc: ProblemError) -> Exception:
    return GraphQLError(f"{exc.status}: {exc.detail}", extensions={"status": exc.status})


@strawberry.type
class Query:
    @strawberry.field(permission_classes=[NeedsViewer])
    async def runbook(self, info: strawberry.Info[Context, None], id: str) -> Runbook | None:
        registered, team = await in_thread(registered_team, info.context.services.engine, id)
        if registered and not _who(info).sees_team(team):
            return None
        try:
            data = await in_thread(registry.get, info.context.services.engine, id)
        except ProblemError as exc:
            if exc.status == 404:
                return None
            raise _problem(exc) from None
        definition = data.get("definition") or {}
        return Runbook(
            id=data["id"],
            name=definition.get("name", data["id"]),
            version=data.get("version") or definition.get("version", ""),
            status=data["status"],
            revision=data.get("revision") or data.get("current_revision") or 0,
            definition=cast(JSON, definition),
        )

    @strawberry.field(permission_classes=[NeedsViewer])
    async def runbook_execution(
        self, info: strawberry.Info[Context, None], id: str
    ) -> RunbookExecution | None:
        try:
            if not await execution_visible(info.context.services, _who(info), id):
                return None
            return RunbookExecution.of(await executions.detail(info.context.services, id))
        except ProblemError as exc:
            if exc.status == 404:
                return None
            raise _problem(exc) from None


@strawberry.type
class Mutation:
    @strawberry.mutation(permission_classes=[NeedsOperator])
    async def execute_runbook(
        self,
        info: strawberry.Info[Context, None],
        id: str,
        params: JSON | None = None,
        legal_basis: str | None = None,
        idempotency_key: str | None = None,
    ) -> ExecutionTicket:
        try:
            who = _who(info)
            body = triggering.ExecuteBody.model_validate({"params": params or {}, "legal_basis": legal_basis})
            execution_id = await triggering.execute(
                info.context.services, id, body, who, idempotency_key, route="/graphql"
            )
        except ProblemError as exc:
            raise _problem(exc) from None
        return ExecutionTicket(execution_id=execution_id, status=ExecutionStatus.QUEUED)

    @strawberry.mutation(permission_classes=[NeedsOperator])
    async def replay_execution(self, info: strawberry.Info[Context, None], id: str) -> ReplayReport:
        try:
            await require_execution(info.context.services, _who(info), id)
            report = await audit.replay_report(info.context.services, id)
        except ProblemError as exc:
            raise _problem(exc) from None
        return ReplayReport(
            execution_id=report["execution_id"],
            verified=report["verified"],
            deviations=[Deviation(**d) for d in report["deviations"]],
            result=report["result"],
        )


def graphql_router() -> GraphQLRouter[Context, None]:
    schema = strawberry.Schema(query=Query, mutation=Mutation)
    # No websocket protocols: the API has no subscriptions, and every request comes through HTTP,
    # where rb_api.auth authenticates it.
    return GraphQLRouter(schema, path="/graphql", context_getter=lambda: Context(), subscription_protocols=())
