"""The FastAPI application factory.

    app = create_app(settings)                        # builds engine + NATS bus in its lifespan
    app = create_app(settings, engine=e, bus=b)       # or uses the given ones (not closed here)

Dependencies are built once in the lifespan and reach routes through `app.state.services`
(see `rb_api.deps`); nothing lives at module level.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from sqlalchemy import Engine

from rb_api.auth import AuthMiddleware
from rb_api.console import install_console
from rb_api.dbutil import in_thread
from rb_api.deps import ApiOptions, Services
from rb_api.graphql import graphql_router
from rb_api.graphql_problems import GraphQLProblemMiddleware
from rb_api.input_guard import InputGuardMiddleware
from rb_api.key_cache import KeyCache
from rb_api.metrics import Metrics
from rb_api.middleware import BodyLimitMiddleware, ContentTypeMiddleware, MetricsMiddleware
from rb_api.oidc import OidcVerifier
from rb_api.openapi import install_openapi
from rb_api.problems import install_handlers, problem_responses
from rb_api.routes import (
    alerts,
    approval_email,
    approvals,
    artifacts,
    authoring,
    executions,
    health,
    keys,
    runbooks,
    schedules,
    schema,
    secrets,
    slack,
    triggers,
)
from rb_api.routes.events import router as events_router
from rb_api.routes.retries import router as retries_router
from rb_common.bus import Bus, connect
from rb_common.identity import BOOTSTRAP_KEY_NAME, Role
from rb_common.settings import Settings
from rb_store.db import database_url, make_engine, migrate_when_reachable, warm_pool
from rb_store.keys import seed_key

log = logging.getLogger("rb_api")

API_VERSION = "1"
MIN_BOOTSTRAP_KEY_LENGTH = 32


def seed_bootstrap_key(settings: Settings, engine: Engine) -> None:
    """RB_BOOTSTRAP_ADMIN_KEY as an admin key (once; a revoked one stays revoked)."""
    if settings.bootstrap_admin_key is None:
        return
    key = settings.bootstrap_admin_key.get_secret_value().strip()
    if not key:  # set but empty (compose's ${RB_BOOTSTRAP_ADMIN_KEY:-}): none
        return
    if len(key) < MIN_BOOTSTRAP_KEY_LENGTH or not key.isprintable() or " " in key:
        raise ValueError(
            f"RB_BOOTSTRAP_ADMIN_KEY must be at least {MIN_BOOTSTRAP_KEY_LENGTH} printable characters "
            "without spaces (e.g. the output of: python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    stored, created = seed_key(
        engine, key, name=BOOTSTRAP_KEY_NAME, roles=[Role.ADMIN.value], created_by="bootstrap"
    )
    if created:
        log.info("seeded the bootstrap admin key %s (id %s)", stored.prefix, stored.id)


def create_app(
    settings: Settings,
    *,
    engine: Engine | None = None,
    bus: Bus | None = None,
    options: ApiOptions | None = None,
) -> FastAPI:
    opts = options or ApiOptions()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            db = engine
            if db is None:
                db = make_engine(database_url(settings))
                stack.callback(db.dispose)
            # A database still starting (or restarting) is waited for, as the other services do.
            await migrate_when_reachable(db, asyncio.Event())
            await in_thread(seed_bootstrap_key, settings, db)
            await in_thread(warm_pool, db)  # the first burst of requests finds its connections open
            oidc = OidcVerifier(settings) if settings.oidc_enabled else None
            if settings.oidc_issuer and oidc is None:
                log.warning("RB_OIDC_ISSUER is set without RB_OIDC_JWKS_URL or RB_OIDC_PUBLIC_KEY: no tokens")
            nats_bus = bus
            if nats_bus is None:
                nats_bus = await connect(settings.nats_url, namespace=settings.namespace, replicas=settings.stream_replicas, name="rb-api")
                stack.push_async_callback(nats_bus.close)
            services = Services(
                settings, db, nats_bus, metrics, opts, oidc, keys=KeyCache(settings.auth_cache_seconds)
            )
            # The backlog figure read before the first request (a first burst does not wait on it).
            await services.queue.refresh(nats_bus)
            await services.ended.start(nats_bus)  # long polls wake on the recorder's word
            stack.push_async_callback(services.ended.stop)
            app.state.services = services
            log.info("rb api ready (database %s, NATS %s)", db.url.render_as_string(), settings.nats_url)
            try:
                yield
            finally:
                app.state.services = None

    app = FastAPI(
        title="rb",
        summary="Runbooks as code: registry, executions, live events",
        version=API_VERSION,
        lifespan=lifespan,
        docs_url="/docs",
        openapi_url="/openapi.json",
    )
    app.state.metrics = metrics
    install_handlers(app)
    install_openapi(app)  # declares the middleware's statuses and the Problem schema
    # Every route behind credentials declares 401 and 403 (rb_api.auth answers them).
    protected = problem_responses(401, 403)
    app.include_router(runbooks.router, responses=protected)
    app.include_router(executions.router, responses=protected)
    app.include_router(health.router)  # /health/* anonymous; /metrics declares its own
    app.include_router(schedules.router, responses=protected)
    app.include_router(graphql_router())  # field errors: extensions.code (rb_api.graphql)
    app.include_router(triggers.router)  # authenticated by the sender, not by API keys
    app.include_router(alerts.router, responses=protected)
    app.include_router(keys.router, responses=protected)
    app.include_router(secrets.router, responses=protected)
    app.include_router(approvals.router, responses=protected)
    app.include_router(slack.router)  # authenticated by Slack's signature, not API keys
    app.include_router(approval_email.router)  # authenticated by its signed link
    app.include_router(retries_router, responses=protected)  # retry a failed step
    app.include_router(events_router, responses=protected)  # outside events for wait_for_event
    app.include_router(artifacts.router, responses=protected)
    app.include_router(schema.router, responses=protected)  # the runbook JSON Schema
    app.include_router(authoring.router, responses=protected)  # the console's editor
    install_console(app, settings)  # the web console at / (rb_api.console)
    # Added last = outermost: metrics see every answer, including the 401s of authentication and
    # the 413s of the body limit; CORS (only with RB_CORS_ORIGINS) answers preflights itself.
    app.add_middleware(GraphQLProblemMiddleware)  # strawberry's text/plain 4xx: problem+json
    app.add_middleware(InputGuardMiddleware)  # malformed Unicode, over-deep JSON and GraphQL: 400
    app.add_middleware(ContentTypeMiddleware)
    app.add_middleware(BodyLimitMiddleware, max_bytes=opts.max_body_bytes)
    app.add_middleware(AuthMiddleware)
    if settings.cors_origin_list:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origin_list,
            allow_credentials=False,
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "Last-Event-ID"],
            expose_headers=["Location", "Retry-After", "WWW-Authenticate"],
        )
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app
