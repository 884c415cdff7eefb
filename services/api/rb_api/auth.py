"""Authentication and authorization of API requests.

`AuthMiddleware` (pure ASGI) authenticates every request before any route runs: the
`Authorization: Bearer <credential>` header holds an API key (rb_store.keys) or, when OIDC is
configured, a JWT (rb_api.oidc). Default deny: every path needs valid credentials (401 with
`WWW-Authenticate: Bearer` otherwise) except

- `/health/*` and the API's documentation (`/docs`, `/redoc`, `/openapi.json`): anonymous;
- the web console's static files (`/`, `/assets/*`: rb_api.console_paths): anonymous, no data;
- `/api/v1/triggers/*`: authenticated by the sender's signature or token (rb_api.routes.triggers),
  never by API keys; the header is not read here;
- `/graphql`: credentials are checked when sent, and each field checks roles itself
  (rb_api.graphql), answering GraphQL errors with `extensions.code` UNAUTHENTICATED / FORBIDDEN.

Websocket connections are refused (the API has none).

The identity is then in `request.state.identity`; routes declare the role they need with the
dependencies below (`Viewer`, `Operator`, `Author`, `Admin`, ...), which answer 403 for an
identity without it, and use `identity.actor` as the actor of what they record.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.types import ASGIApp, Receive, Scope, Send

from rb_api.console_paths import is_console_file
from rb_api.dbutil import in_thread
from rb_api.deps import Services
from rb_api.oidc import InvalidToken, looks_like_jwt
from rb_api.problems import ProblemError
from rb_common.identity import Identity, Role, hash_key
from rb_common.problems import PROBLEM_JSON, problem_body
from rb_store import keys
from rb_store.keys import StoredKey

log = logging.getLogger("rb_api")

ANONYMOUS_PATHS = frozenset(
    {"/health/live", "/health/ready", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"}
)
# Authenticated by the sender (signatures, tokens of the alert source), not by API keys.
SENDER_AUTHENTICATED_PREFIX = "/api/v1/triggers/"
GRAPHQL_PATH = "/graphql"
MAX_CREDENTIAL_LENGTH = 8192

CHALLENGE = 'Bearer realm="rb"'


def is_anonymous(path: str) -> bool:
    return path in ANONYMOUS_PATHS or is_console_file(path)


def is_sender_authenticated(path: str) -> bool:
    # Slack's Approve / Reject clicks: signed by Slack (rb_api.slack_actions), not API keys.
    return path.startswith(SENDER_AUTHENTICATED_PREFIX) or path == "/api/v1/slack/interactivity"


# An execution's page for people (issue 13): authenticated by its signed, expiring link
# (rb_common.links), which the route checks; a click from Slack or a mail client has no API key.
LINK_AUTHENTICATED = re.compile(r"^/api/v1/executions/[A-Za-z0-9_-]{1,64}/page$")


# An approval decided from an email: its signed link (rb_common.approval_links), checked by the route.
APPROVAL_LINK = re.compile(r"^/api/v1/approvals/[A-Za-z0-9_-]{1,64}:[A-Za-z_][A-Za-z0-9_-]{0,99}/email$")


def is_link_authenticated(path: str) -> bool:
    return LINK_AUTHENTICATED.match(path) is not None or APPROVAL_LINK.match(path) is not None


def needs_credentials(path: str) -> bool:
    """Whether the middleware refuses the path without valid credentials."""
    return not (
        is_anonymous(path)
        or is_sender_authenticated(path)
        or is_link_authenticated(path)
        or path == GRAPHQL_PATH
    )


def unauthorized(detail: str, *, invalid: bool = False) -> ProblemError:
    challenge = CHALLENGE + (', error="invalid_token"' if invalid else "")
    return ProblemError(
        401, detail, slug="unauthenticated", title="Unauthorized", headers={"WWW-Authenticate": challenge}
    )


async def authenticate(svc: Services, credential: str) -> Identity | None:
    """The identity behind a bearer credential (an API key or an OIDC token), or None."""
    if not credential or len(credential) > MAX_CREDENTIAL_LENGTH or not credential.isprintable():
        return None
    if svc.oidc is not None and looks_like_jwt(credential):
        try:
            return await svc.oidc.verify(credential)
        except InvalidToken as exc:
            log.info("refused a bearer token: %s", exc)
            return None
    cached = svc.keys.get(credential)
    if cached is not None:  # looked up less than RB_AUTH_CACHE_SECONDS ago (rb_api.key_cache)
        return cached.identity()
    if svc.keys.seconds <= 0:  # no cache: every request reads the key
        stored = await _look_up(svc, credential)
        return None if stored is None else stored.identity()
    # One lookup per credential at a time: the requests that arrive while it runs (a burst, or
    # every request in flight when the cached entry expires) wait for it instead of each
    # reading the table. A lookup begun before a key was created or revoked through this
    # process (the generation) is not joined: the request after a revocation reads anew.
    slot = (hash_key(credential), svc.keys.generation())
    lookup = svc.keys.lookups.get(slot)
    if lookup is None:
        lookup = asyncio.ensure_future(_look_up(svc, credential))
        svc.keys.lookups[slot] = lookup
        lookup.add_done_callback(lambda done: _forget(svc, slot, done))
    stored = await asyncio.shield(lookup)  # a request gone meanwhile does not cancel the others'
    return None if stored is None else stored.identity()


def _forget(svc: Services, slot: tuple[str, int], done: asyncio.Future[StoredKey | None]) -> None:
    if svc.keys.lookups.get(slot) is done:
        del svc.keys.lookups[slot]
    if not done.cancelled():
        done.exception()  # retrieved: every waiter may have gone before it failed


async def _look_up(svc: Services, credential: str) -> StoredKey | None:
    generation = svc.keys.generation()
    stored, due = await in_thread(keys.find_active, svc.engine, credential)
    if stored is None:
        return None
    svc.keys.put(credential, stored, generation)
    if due:  # a write: off the request's path, so it never waits behind other writers
        task = asyncio.create_task(_touch(svc, stored.id))
        _touching.add(task)
        task.add_done_callback(_touching.discard)
    return stored


_touching: set[asyncio.Task[None]] = set()


async def _touch(svc: Services, key_id: str) -> None:
    try:
        await in_thread(keys.touch, svc.engine, key_id)
    except Exception as exc:  # best effort: last_used_at is informational
        log.debug("cannot note the use of key %s: %s", key_id, exc)


async def _send_problem(scope: Scope, send: Send, exc: ProblemError) -> None:
    body = json.dumps(
        problem_body(exc.status, exc.detail, slug=exc.slug, title=exc.title, instance=scope.get("path"))
    ).encode()
    headers = [(b"content-type", PROBLEM_JSON.encode()), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in (exc.headers or {}).items()]
    await send({"type": "http.response.start", "status": exc.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


class AuthMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            # The API serves no websockets (GraphQL has no subscriptions): refuse them all, so
            # nothing reaches a route around the checks of HTTP requests.
            await send({"type": "websocket.close", "code": 1008})
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        if is_anonymous(path) or is_sender_authenticated(path) or is_link_authenticated(path):
            await self.app(scope, receive, send)
            return
        try:
            identity = await self._identify(scope)
        except ProblemError as exc:
            await _send_problem(scope, send, exc)
            return
        scope.setdefault("state", {})["identity"] = identity
        await self.app(scope, receive, send)

    async def _identify(self, scope: Scope) -> Identity | None:
        path: str = scope.get("path", "")
        header = _header(scope, b"authorization")
        if header is None or not header.strip():
            if needs_credentials(path):
                raise unauthorized("credentials are required: Authorization: Bearer <API key or token>")
            return None
        scheme, _, credential = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not credential.strip():
            raise unauthorized("use Authorization: Bearer <API key or token>", invalid=True)
        app: Any = scope.get("app")
        svc = getattr(getattr(app, "state", None), "services", None)
        if not isinstance(svc, Services):
            raise ProblemError(503, "the API is starting up or shutting down", slug="not-ready")
        try:
            identity = await authenticate(svc, credential.strip())
        except (OperationalError, InterfaceError, PoolTimeout) as exc:
            log.warning(
                "database unavailable while authenticating: %s", str(exc).splitlines()[0] if str(exc) else exc
            )
            raise ProblemError(
                503,
                "the database is unavailable: credentials cannot be checked",
                slug="database-unavailable",
                title="Database unavailable",
                headers={"Retry-After": "1"},
            ) from None
        if identity is None:
            raise unauthorized("the credentials are invalid, expired or revoked", invalid=True)
        return identity


# -- dependencies of the routes -------------------------------------------------------------------

# Only for the OpenAPI document (the "Authorize" button of /docs); the middleware authenticates.
_bearer = HTTPBearer(auto_error=False, description="an API key (rbk_...) or an OIDC access token")


async def optional_identity(request: Request) -> Identity | None:
    """The authenticated identity, or None (anonymous paths, GraphQL without credentials)."""
    found = getattr(request.state, "identity", None)
    return found if isinstance(found, Identity) else None


async def current_identity(
    request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)] = None
) -> Identity:
    found = await optional_identity(request)
    if found is None:
        raise unauthorized("credentials are required: Authorization: Bearer <API key or token>")
    return found


def forbidden(who: Identity, role: Role) -> ProblemError:
    return ProblemError(
        403, f"{who.actor} lacks the role {role.value!r}", slug="forbidden", title="Forbidden"
    )


def require(role: Role) -> Callable[..., Awaitable[Identity]]:
    """A dependency: the identity, if it has `role` (403 otherwise)."""

    async def dependency(who: Annotated[Identity, Depends(current_identity)]) -> Identity:
        if not who.has(role):
            raise forbidden(who, role)
        return who

    dependency.__name__ = f"require_{role.value}"
    dependency.role = role  # type: ignore[attr-defined]
    return dependency


IdentityDep = Annotated[Identity, Depends(current_identity)]
OptionalIdentityDep = Annotated[Identity | None, Depends(optional_identity)]
Viewer = Annotated[Identity, Depends(require(Role.VIEWER))]
Operator = Annotated[Identity, Depends(require(Role.OPERATOR))]
Approver = Annotated[Identity, Depends(require(Role.APPROVER))]
Author = Annotated[Identity, Depends(require(Role.AUTHOR))]
Admin = Annotated[Identity, Depends(require(Role.ADMIN))]
