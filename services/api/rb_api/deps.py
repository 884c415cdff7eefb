"""What routes get through Depends: the services built once in the app's lifespan."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Engine

from rb_api.accepted import Accepted
from rb_api.backpressure import QueueGate
from rb_api.dbutil import ThreadLane
from rb_api.ended import Ended
from rb_api.key_cache import KeyCache
from rb_api.metrics import Metrics
from rb_api.oidc import OidcVerifier
from rb_api.problems import ProblemError
from rb_api.revisions import RevisionCache
from rb_common.bus import Bus
from rb_common.settings import Settings


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
    oidc: OidcVerifier | None = None  # when RB_OIDC_* configure bearer tokens
    queue: QueueGate = field(default_factory=QueueGate)  # the execute route's 429 (backpressure)
    keys: KeyCache = field(default_factory=lambda: KeyCache(0))  # see rb_api.key_cache
    revisions: RevisionCache = field(default_factory=RevisionCache)  # see rb_api.revisions
    accepted: Accepted = field(default_factory=Accepted)  # see rb_api.accepted
    ended: Ended = field(default_factory=Ended)  # the recorder's announced ends (rb_api.ended)
    # The long polls' reads (rb_api.long_poll): two threads at most, the rest of the pool is left
    # to the requests that someone is waiting on.
    poll_reads: ThreadLane = field(default_factory=lambda: ThreadLane(2))


async def services(request: Request) -> Services:
    found = getattr(request.app.state, "services", None)
    if not isinstance(found, Services):
        raise ProblemError(503, "the API is starting up or shutting down", slug="not-ready")
    return found


ServicesDep = Annotated[Services, Depends(services)]
