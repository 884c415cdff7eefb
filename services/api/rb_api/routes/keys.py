"""/api/v1/keys: API keys (role admin). The key itself is in the answer to POST only, once;
the database keeps its SHA-256. A key cannot revoke itself."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Path
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from rb_api.auth import Admin
from rb_api.dbutil import in_thread
from rb_api.deps import ServicesDep
from rb_api.problems import ProblemError, not_found, problem_responses
from rb_common.identity import Role
from rb_common.model import TEAM_PATTERN
from rb_store import keys

router = APIRouter(prefix="/api/v1/keys", tags=["keys"])

KeyId = Annotated[str, Path(max_length=32, pattern=r"^[0-9a-f]{1,32}$", description="the key's id")]
_PROBLEMS = problem_responses(400, 401, 403, 404, 409, 415, 422)
MAX_EXPIRES_IN = 10 * 366 * 86_400

Team = Annotated[str, Field(pattern=TEAM_PATTERN, max_length=100)]


class NewKey(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]*$", description="who holds it"
    )
    roles: list[Role] = Field(
        min_length=1, max_length=5, description="viewer, operator, approver, author, admin"
    )
    teams: list[Team] = Field(default_factory=list, max_length=100, description="team scope memberships")
    expires_in: int | None = Field(
        default=None, ge=60, le=MAX_EXPIRES_IN, description="seconds until it expires (default: never)"
    )
    slack_user_id: str | None = Field(
        default=None,
        pattern=r"^[UW][A-Z0-9]{2,30}$",
        description="the Slack user (U…) whose Approve / Reject clicks decide as this identity",
    )


class KeyInfo(BaseModel):
    id: str
    name: str
    prefix: str = Field(description="the key's first characters")
    roles: list[str]
    teams: list[str]
    created_by: str
    created_at: str | None
    expires_at: str | None
    revoked_at: str | None
    revoked_by: str | None
    last_used_at: str | None
    active: bool
    slack_user_id: str | None = None


class CreatedKey(KeyInfo):
    key: str = Field(description="the API key: shown this once, never again")


class KeyList(BaseModel):
    items: list[KeyInfo]


@router.post(
    "",
    status_code=201,
    summary="Create an API key; the answer holds the key, the only time it is shown",
    response_model=CreatedKey,
    responses=_PROBLEMS,
)
async def create_key(body: NewKey, svc: ServicesDep, who: Admin) -> JSONResponse:
    expires_at = datetime.now(UTC) + timedelta(seconds=body.expires_in) if body.expires_in else None
    stored, key = await in_thread(
        keys.create_key,
        svc.engine,
        name=body.name,
        roles=[r.value for r in body.roles],
        teams=body.teams,
        created_by=who.actor,
        expires_at=expires_at,
        slack_user_id=body.slack_user_id,
    )
    return JSONResponse(
        {**stored.public(), "key": key},
        status_code=201,
        headers={"Location": f"/api/v1/keys/{stored.id}", "Cache-Control": "no-store"},
    )


@router.get("", summary="API keys (never the keys themselves)", response_model=KeyList, responses=_PROBLEMS)
async def list_keys(svc: ServicesDep, _: Admin) -> dict[str, Any]:
    found = await in_thread(keys.list_keys, svc.engine)
    return {"items": [k.public() for k in found]}


@router.delete(
    "/{key_id}",
    summary="Revoke an API key (it answers 401 from then on); a key cannot revoke itself",
    response_model=KeyInfo,
    responses=_PROBLEMS,
)
async def revoke_key(key_id: KeyId, svc: ServicesDep, who: Admin) -> dict[str, Any]:
    if who.kind == "key" and who.id == key_id:
        raise ProblemError(
            409,
            "a key cannot revoke itself; revoke it with another admin key",
            slug="key-revokes-itself",
            title="Conflict",
        )
    revoked = await in_thread(keys.revoke_key, svc.engine, key_id, revoked_by=who.actor)
    svc.keys.clear()  # refused from this answer on (rb_api.key_cache; other processes: within its TTL)
    if revoked is None:
        raise not_found(f"key {key_id!r}", "key-not-found")
    return revoked.public()
