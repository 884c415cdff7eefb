"""What routes get through Depends: the services built once in the app's lifespan."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy import Engine

from rb_api.metrics import Metrics
from rb_api.problems import ProblemError
from rb_common.bus import Bus
from rb_common.settings import Settings

DEFAULT_ACTOR = "api"


@dataclass(frozen=True)
class ApiOptions:
    max_body_bytes: int = 1024 * 1024
    # How long GET /executions/{id}/stream waits for the first event of an unknown execution
    # (it may have been triggered a moment ago) before answering 404.
    stream_wait_seconds: float = 5.0
    # SSE comment sent while an execution is quiet, so proxies keep the connection open.
    keepalive_seconds: float = 15.0
    bus_read_timeout: float = 5.0
    ready_timeout: float = 2.0


@dataclass(frozen=True)
class Services:
    settings: Settings
    engine: Engine
    bus: Bus
    metrics: Metrics
    options: ApiOptions


def services(request: Request) -> Services:
    found = getattr(request.app.state, "services", None)
    if not isinstance(found, Services):
        raise ProblemError(503, "the API is starting up or shutting down", slug="not-ready")
    return found


def actor(
    x_rb_actor: Annotated[
        str | None, Header(alias="X-RB-Actor", max_length=200, description="who is asking (default: api)")
    ] = None,
) -> str:
    name = (x_rb_actor or "").strip()
    return name if name and name.isprintable() else DEFAULT_ACTOR


ServicesDep = Annotated[Services, Depends(services)]
ActorDep = Annotated[str, Depends(actor)]
