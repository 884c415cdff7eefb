"""`POST /runbooks/{id}/execute`: validate the inputs, build the TriggerRequest, publish it once.

The trigger carries the exact data of the execution's first event (`execution.requested`):
`RunRequest.event_data()` of the executor, with the definition snapshot of the runbook's current
revision. Idempotency: an `Idempotency-Key` maps to one execution id in `idempotency_keys` (the
primary key settles concurrent first uses), and the trigger is published with
`Nats-Msg-Id = execution id`, so JetStream drops a repeated publish inside its duplicate window.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine, insert, select
from sqlalchemy.exc import IntegrityError

from rb_api import revisions
from rb_api.dbutil import utcnow
from rb_api.problems import ProblemError, not_found
from rb_api.registry import APPROVED, DEPRECATED
from rb_api.revisions import Live
from rb_common import logs, tracing
from rb_common.bus import TRIGGER_DEDUPE_WINDOW, Bus
from rb_common.identity import Identity
from rb_common.messages import TriggerRequest
from rb_common.model import Runbook
from rb_common.params import ParamsError, resolve_params
from rb_engine.runner import RunRequest
from rb_store.tables import idempotency_keys

log = logging.getLogger("rb_api")

MAX_KEY_LENGTH = 200
_TRIGGER_WINDOW = TRIGGER_DEDUPE_WINDOW
# A repeated key re-publishes (deduplicated by JetStream) only well inside the duplicate window,
# so a first attempt that stored the key but never published still gets its trigger out.
REPUBLISH_WITHIN = timedelta(seconds=_TRIGGER_WINDOW * 0.9)


class ExecuteBody(BaseModel):
    """Body of POST /runbooks/{id}/execute; every field is optional."""

    model_config = ConfigDict(extra="forbid")

    params: dict[str, Any] = Field(default_factory=dict, description="validated against `parameters`")
    legal_basis: str | None = Field(default=None, description="defaults to the runbook's legal_basis")
    assumptions: dict[str, Any] = Field(
        default_factory=dict, description="facts for the runbook's assumptions (name -> value)"
    )


@dataclass(frozen=True)
class Claim:
    execution_id: str
    fresh: bool  # this request created the key (or there was no key)
    created_at: datetime | None = None


def new_execution_id() -> str:
    return uuid.uuid4().hex


def build_trigger(
    found: Live,
    runbook: Runbook,
    body: ExecuteBody,
    *,
    actor: str,
    execution_id: str,
    idempotency_key: str | None = None,
) -> TriggerRequest:
    """The TriggerRequest for the current revision; ParamsError names every failing field."""
    try:
        params = resolve_params(runbook, body.params)
    except ParamsError:
        raise
    except Exception as exc:  # e.g. an unresolvable $ref in the parameters schema
        raise ProblemError(
            422,
            f"the parameters cannot be checked against the runbook's schema: {type(exc).__name__}: {exc}",
            slug="invalid-params",
            title="Invalid parameters",
        ) from None
    trigger: dict[str, Any] = {"type": "api", "actor": actor, "revision": found.revision}
    if idempotency_key is not None:
        trigger["idempotency_key"] = idempotency_key
    request = RunRequest(
        runbook=runbook,
        params=params,
        env={},
        trigger=trigger,
        facts=dict(body.assumptions),
        actor=actor,
        legal_basis=body.legal_basis,
        execution_id=execution_id,
    )
    return TriggerRequest(execution_id=execution_id, actor=actor, data=request.event_data())


def executable(svc: Any, runbook_id: str, who: Identity) -> tuple[Live, Runbook]:
    """The runbook's live revision, if `who` may see it and it may run: 404 unknown or hidden
    (team scope), 409 deprecated, not approved or no longer loading. One query when the revision
    was parsed before (rb_api.revisions)."""
    found = revisions.live(svc.engine, runbook_id)
    if found is None or found.stamp is None or not who.sees_team(found.team):
        raise not_found(f"runbook {runbook_id!r}", "runbook-not-found")
    if found.status == DEPRECATED:
        raise ProblemError(
            409,
            f"runbook {found.id!r} is DEPRECATED and cannot be executed",
            slug="runbook-deprecated",
            title="Runbook is deprecated",
        )
    if found.status != APPROVED:
        raise ProblemError(
            409,
            f"revision {found.revision} of runbook {found.id!r} is {found.status}: only APPROVED "
            "revisions execute (an admin other than its author approves it); `rb run` runs local files",
            slug="runbook-not-approved",
            title="Runbook is not approved",
        )
    return found, svc.revisions.runbook(svc.engine, found)


def prepare(
    svc: Any, runbook_id: str, body: ExecuteBody, who: Identity, key: str | None
) -> tuple[TriggerRequest, Claim]:
    """Everything execute does before publishing, in one trip to the thread pool: the checks, the
    trigger built (validated before the key is stored, so a rejected request claims nothing), and
    the key's execution id."""
    found, runbook = executable(svc, runbook_id, who)
    request = build_trigger(
        found, runbook, body, actor=who.actor, execution_id=new_execution_id(), idempotency_key=key
    )
    claim = Claim(request.execution_id, fresh=True)
    if key is not None:
        claim = claim_key(svc.engine, key, runbook_id, request.execution_id)
        request = request.model_copy(update={"execution_id": claim.execution_id})
    return request, claim


def check_key(key: str | None) -> str | None:
    if key is None:
        return None
    key = key.strip()
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise ProblemError(
            400,
            f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable characters",
            slug="invalid-idempotency-key",
        )
    return key


def claim_key(engine: Engine, key: str, runbook_id: str, candidate: str) -> Claim:
    """The execution id for `key`: an existing one, or `candidate` if this call stored it first."""
    for _ in range(3):
        with engine.connect() as conn:
            row = conn.execute(select(idempotency_keys).where(idempotency_keys.c.key == key)).first()
        if row is not None:
            if row.runbook_id != runbook_id:
                raise ProblemError(
                    422,
                    f"Idempotency-Key {key!r} was already used to execute runbook {row.runbook_id!r}",
                    slug="idempotency-key-reused",
                    title="Idempotency-Key reused",
                )
            created = row.created_at
            if created is not None and created.tzinfo is None:
                created = created.replace(tzinfo=UTC)
            return Claim(row.execution_id, False, created)
        try:
            with engine.begin() as conn:
                now = utcnow()
                conn.execute(
                    insert(idempotency_keys).values(
                        key=key, runbook_id=runbook_id, execution_id=candidate, created_at=now
                    )
                )
            return Claim(candidate, True, now)
        except IntegrityError:
            continue  # another request stored the key first: read its execution id
    raise ProblemError(
        409, f"Idempotency-Key {key!r} is being used concurrently; retry", slug="concurrent-change"
    )


def should_publish(claim: Claim) -> bool:
    if claim.fresh:
        return True
    return claim.created_at is None or utcnow() - claim.created_at < REPUBLISH_WITHIN


async def publish_trigger(
    bus: Bus, runbook_id: str, request: TriggerRequest, caller: Mapping[str, str] | None = None
) -> bool:
    """Publish to rb.trigger.<runbook_id>; True if JetStream stored it, False if it was a duplicate.
    `caller`: the HTTP request's headers; a W3C `traceparent` in them makes the trigger part of
    the caller's trace (a CI job's, a deploy pipeline's)."""
    try:
        # The execution's trace starts here (or continues the caller's); its context goes with
        # the trigger message.
        with (
            logs.bound(request.execution_id),
            tracing.span(
                "rb.trigger",
                parent=caller,
                kind="producer",
                attributes={"rb.execution_id": request.execution_id, "rb.runbook_id": runbook_id},
            ),
        ):
            ack = await bus.js.publish(
                bus.names.trigger_subject(runbook_id),
                request.encode(),
                headers=tracing.inject({"Nats-Msg-Id": request.execution_id}),
                stream=bus.names.triggers_stream,
                timeout=5.0,
            )
    except Exception as exc:
        log.warning("cannot publish trigger for %s: %s", runbook_id, exc)
        raise ProblemError(
            503,
            f"the trigger could not be published to NATS ({type(exc).__name__}); retry, with the same "
            "Idempotency-Key to avoid a second execution",
            slug="bus-unavailable",
            title="Message bus unavailable",
            headers={"Retry-After": "1"},
        ) from None
    return not ack.duplicate


async def execute(
    svc: Any,
    runbook_id: str,
    body: ExecuteBody,
    who: Identity,
    idempotency_key: str | None,
    *,
    route: str,
    caller: Mapping[str, str] | None = None,
) -> str:
    """Start an execution of the runbook's current revision (REST and GraphQL both come here):
    visibility and status checked, params validated, the definition snapshotted, the key
    honoured; returns the execution id. `route` names the caller's route in the metrics."""
    from rb_api.dbutil import in_thread

    key = check_key(idempotency_key)
    # Backpressure first: past the queue's bound nothing is claimed or published (429 with
    # Retry-After, rb_api.backpressure), whatever the runbook.
    try:
        await svc.queue.check(svc.bus, svc.settings.max_queued_executions, svc.settings.queue_retry_after)
    except ProblemError as exc:
        svc.metrics.refused(route, exc.slug or str(exc.status))
        raise
    try:
        request, claim = await in_thread(prepare, svc, runbook_id, body, who, key)
        if should_publish(claim):
            await publish_trigger(svc.bus, runbook_id, request, _trace_headers(caller))
        # a long poll right after the 202 waits for it
        svc.accepted.add(claim.execution_id, created=claim.fresh)
    finally:
        svc.queue.settled()
    return claim.execution_id


def _trace_headers(caller: Mapping[str, str] | None) -> dict[str, str] | None:
    """Only the W3C trace context of the caller's headers (never its Authorization)."""
    if not caller:
        return None
    return {name: caller[name] for name in ("traceparent", "tracestate") if name in caller}
