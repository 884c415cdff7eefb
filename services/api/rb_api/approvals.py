"""Decisions on approval steps: who may decide, then the decision as a ControlCommand.

One path for every channel (the REST routes; Slack and email links decide as the identity they
map to): the approval must be pending; the caller must be one of its `approvers` (a user name:
the identity's name or actor; `role:<role>`: an identity with that role); the execution's
requester and the author of the runbook revision it runs may not decide (four eyes); one
decision per person; a comment when the step requires one. The decision travels to the
executor as `approval.decided` on `rb.control.<execution>` (message id: approval and actor, so a
repeated click is one message), where the coordinator counts it (rb_engine.coordinator.approvals).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, select

from rb_api import control
from rb_api.dbutil import in_thread
from rb_api.deps import Services
from rb_api.problems import ProblemError, not_found
from rb_api.scope import require_execution
from rb_common.events import EventType
from rb_common.identity import Identity, Role
from rb_common.messages import ControlCommand
from rb_common.payloads import ApprovalDecided
from rb_store.approval_queries import get_approval
from rb_store.tables import runbook_executions, runbook_versions, runbooks

DECISIONS = ("approve", "reject")


def missing(approval_id: str) -> ProblemError:
    return not_found(f"approval {approval_id!r}", "approval-not-found")


def forbidden(detail: str) -> ProblemError:
    return ProblemError(403, detail, slug="approval-forbidden", title="Not allowed to decide this approval")


def may_decide(who: Identity, approvers: list[str]) -> bool:
    """Whether `who` is one of `approvers` (user names, or `role:<role>`)."""
    for entry in approvers:
        if entry.startswith("role:"):
            try:
                if who.has(Role(entry.removeprefix("role:").strip().lower())):
                    return True
            except ValueError:
                continue
        elif entry in (who.name, who.actor):
            return True
    return False


def revision_author(engine: Engine, execution_id: str, runbook_id: str | None) -> str | None:
    """Who wrote the runbook revision the execution runs (its trigger's revision, else the
    runbook's current one); None when the registry does not know."""
    if runbook_id is None:
        return None
    with engine.connect() as conn:
        trigger = conn.execute(
            select(runbook_executions.c.trigger).where(runbook_executions.c.id == execution_id)
        ).scalar()
        revision = trigger.get("revision") if isinstance(trigger, dict) else None
        if not isinstance(revision, int):
            revision = conn.execute(
                select(runbooks.c.current_revision).where(runbooks.c.id == runbook_id)
            ).scalar()
        if revision is None:
            return None
        author = conn.execute(
            select(runbook_versions.c.created_by).where(
                runbook_versions.c.runbook_id == runbook_id, runbook_versions.c.revision == revision
            )
        ).scalar()
    return str(author) if author else None


async def lookup(svc: Services, who: Identity, approval_id: str) -> dict[str, Any]:
    """The approval, if it exists and its execution is visible to `who` (404 otherwise)."""
    found = await in_thread(get_approval, svc.engine, approval_id)
    if found is None:
        raise missing(approval_id)
    await require_execution(svc, who, found["execution_id"])
    return found


async def decide(
    svc: Services, who: Identity, approval_id: str, decision: str, comment: str | None, via: str
) -> dict[str, Any]:
    """Check the rules and send the decision; what the routes answer (202)."""
    approval = await lookup(svc, who, approval_id)
    if approval["status"] != "pending":
        raise ProblemError(
            409,
            f"approval {approval_id!r} is {approval['status']}: nothing to decide any more",
            slug="approval-decided",
            title="Approval already decided",
        )
    if not may_decide(who, approval["approvers"]):
        raise forbidden(f"{who.actor} is not one of the approvers ({', '.join(approval['approvers'])})")
    if who.actor == approval["requested_by"]:
        raise forbidden(f"{who.actor} requested this execution and may not approve it (four eyes)")
    author = await in_thread(revision_author, svc.engine, approval["execution_id"], approval["runbook_id"])
    if author is not None and who.actor == author:
        raise forbidden(f"{who.actor} authored the runbook revision and may not approve it (four eyes)")
    if any(d.get("actor") == who.actor for d in approval["decisions"]):
        raise ProblemError(
            409,
            f"{who.actor} has decided on approval {approval_id!r} already",
            slug="approval-decided",
            title="Already decided",
        )
    comment = (comment or "").strip() or None
    if approval["require_comment"] and comment is None:
        raise ProblemError(
            422,
            "this approval requires a comment: say why",
            slug="comment-required",
            title="Comment required",
            errors=[{"field": "body.comment", "message": "required by the approval step"}],
        )
    payload = ApprovalDecided(
        step_id=approval["step_id"],
        approval_id=approval_id,
        decision=decision,
        actor=who.actor,
        comment=comment,
        via=via,
    )
    command = ControlCommand(
        execution_id=approval["execution_id"],
        type=EventType.APPROVAL_DECIDED.value,
        actor=who.actor,
        data=payload.dump(),
    )
    await control.publish_command(svc.bus, command, f"{approval_id}:decided:{who.actor}")
    approved = sum(1 for d in approval["decisions"] if d.get("decision") == "approve")
    return {
        "approval_id": approval_id,
        "execution_id": approval["execution_id"],
        "decision": decision,
        "actor": who.actor,
        "status": "ACCEPTED",
        # Whether this decision settles the step (a rejection, or the last approval needed).
        "settles": decision == "reject" or approved + 1 >= (approval["min_approvals"] or 1),
    }
