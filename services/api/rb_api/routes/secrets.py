"""/api/v1/secrets: the encrypted secret store, write-only (role admin). PUT stores a value, GET
lists names and dates, DELETE removes one; no route ever answers a value (rb_store.secrets)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Response
from pydantic import BaseModel, ConfigDict, Field

from rb_api.auth import Admin
from rb_api.dbutil import in_thread
from rb_api.deps import ServicesDep
from rb_api.problems import ProblemError, not_found, problem_responses
from rb_common.secrets import MAX_SECRET_BYTES, MasterKeyError, check_value
from rb_store.secrets import SecretError, SecretStore

router = APIRouter(prefix="/api/v1/secrets", tags=["secrets"])

SecretName = Annotated[
    str,
    Path(
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=100, description="the name steps use: ${secrets.NAME}"
    ),
]
_PROBLEMS = problem_responses(400, 401, 403, 413, 415, 422, 503)


class SecretValue(BaseModel):
    model_config = ConfigDict(extra="forbid")

    value: str = Field(min_length=1, max_length=MAX_SECRET_BYTES, description="the value (never answered)")


class SecretInfo(BaseModel):
    name: str
    created_at: str | None
    updated_at: str | None
    created_by: str | None
    updated_by: str | None


class StoredSecret(BaseModel):
    name: str
    created: bool = Field(description="true if the name was new")


class SecretList(BaseModel):
    items: list[SecretInfo]


def _store(svc: Any) -> SecretStore:
    key = svc.settings.master_key
    return SecretStore(svc.engine, key.get_secret_value() if key else None)


def _unavailable(exc: Exception) -> ProblemError:
    return ProblemError(
        503,
        f"the secret store is not available: {exc}",
        slug="secret-store-unavailable",
        title="Secret store unavailable",
    )


@router.put(
    "/{name}",
    summary="Store a secret (write-only: the value is never answered)",
    responses={201: {"description": "created", "model": StoredSecret}, **_PROBLEMS},
)
async def put_secret(
    name: SecretName, body: SecretValue, svc: ServicesDep, who: Admin, response: Response
) -> StoredSecret:
    problem = check_value(body.value)
    if problem:
        raise ProblemError(422, problem, slug="invalid-secret")
    try:
        created = await in_thread(_store(svc).put, name, body.value, who.actor)
    except MasterKeyError as exc:
        raise _unavailable(exc) from None
    except SecretError as exc:
        raise ProblemError(422, str(exc), slug="invalid-secret") from None
    response.status_code = 201 if created else 200
    return StoredSecret(name=name, created=created)


@router.get("", summary="Names of the stored secrets, never their values", responses=_PROBLEMS)
async def list_secrets(svc: ServicesDep, who: Admin) -> SecretList:
    rows = await in_thread(_store(svc).names)
    return SecretList(items=[SecretInfo(**row) for row in rows])


@router.delete(
    "/{name}",
    status_code=204,
    summary="Remove a secret from the store",
    responses=problem_responses(400, 401, 403, 404, 503),
)
async def delete_secret(name: SecretName, svc: ServicesDep, who: Admin) -> Response:
    if not await in_thread(_store(svc).delete, name):
        raise not_found(f"secret {name!r}", "secret-not-found")
    return Response(status_code=204)
