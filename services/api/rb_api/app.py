"""The FastAPI application factory.

    app = create_app(settings)                        # builds engine + NATS bus in its lifespan
    app = create_app(settings, engine=e, bus=b)       # or uses the given ones (not closed here)

Dependencies are built once in the lifespan and reach routes through `app.state.services`
(see `rb_api.deps`); nothing lives at module level.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI
from sqlalchemy import Engine

from rb_api.dbutil import in_thread
from rb_api.deps import ApiOptions, Services
from rb_api.graphql import graphql_router
from rb_api.input_guard import InputGuardMiddleware
from rb_api.metrics import Metrics
from rb_api.middleware import BodyLimitMiddleware, MetricsMiddleware
from rb_api.problems import install_handlers
from rb_api.routes import alerts, executions, health, runbooks, schedules, triggers
from rb_common.bus import Bus, connect
from rb_common.settings import Settings
from rb_store.db import database_url, make_engine, migrate

log = logging.getLogger("rb_api")

API_VERSION = "1"


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
            await in_thread(migrate, db)
            nats_bus = bus
            if nats_bus is None:
                nats_bus = await connect(settings.nats_url, namespace=settings.namespace, name="rb-api")
                stack.push_async_callback(nats_bus.close)
            app.state.services = Services(settings, db, nats_bus, metrics, opts)
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
    app.include_router(runbooks.router)
    app.include_router(executions.router)
    app.include_router(health.router)
    app.include_router(schedules.router)
    app.include_router(graphql_router())
    app.include_router(triggers.router)
    app.include_router(alerts.router)
    # Added last = outermost: metrics see every answer, including the 413s of the body limit.
    app.add_middleware(InputGuardMiddleware)  # malformed Unicode, over-deep JSON and GraphQL: 400
    app.add_middleware(BodyLimitMiddleware, max_bytes=opts.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app
