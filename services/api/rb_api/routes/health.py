"""Liveness, readiness (NATS, JetStream quorum, database) and Prometheus metrics."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from rb_api.auth import Viewer
from rb_api.dbutil import in_thread
from rb_api.deps import Services, ServicesDep
from rb_api.problems import problem_response, problem_responses
from rb_common.health import jetstream_answers
from rb_store.db import select_one

router = APIRouter(tags=["health"])


@router.get("/health/live", summary="The process is up")
async def live() -> dict[str, str]:
    return {"status": "ok"}


async def _check_nats(svc: Services) -> str | None:
    nc = svc.bus.nc
    if not nc.is_connected:
        return "not connected"
    try:
        await nc.flush(timeout=max(1, round(svc.options.ready_timeout)))
    except Exception as exc:
        return f"flush failed: {type(exc).__name__}: {exc}".rstrip(": ")
    return None


async def _check_jetstream(svc: Services) -> str | None:
    try:
        await asyncio.wait_for(
            jetstream_answers(svc.bus.js, svc.bus.names.events_stream), max(1.0, svc.options.ready_timeout)
        )
    except TimeoutError:
        return f"no answer within {max(1.0, svc.options.ready_timeout):g} s (no JetStream meta leader?)"
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}".rstrip(": ")
    return None


async def _check_db(svc: Services) -> str | None:
    try:
        await asyncio.wait_for(in_thread(select_one, svc.engine), svc.options.ready_timeout * 2)
    except Exception as exc:
        return (
            f"SELECT 1 failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(
                ": "
            )
        )
    return None


@router.get(
    "/health/ready",
    summary="NATS answers a flush, JetStream serves the events stream (a leader: quorum), the database a SELECT 1",
    responses={503: {"description": "a dependency is down (problem+json naming it)"}},
)
async def ready(request: Request, svc: ServicesDep) -> Any:
    nats_problem, js_problem, db_problem = await asyncio.gather(
        _check_nats(svc), _check_jetstream(svc), _check_db(svc)
    )
    problems = {"nats": nats_problem, "jetstream": js_problem, "database": db_problem}
    checks = {name: problem or "ok" for name, problem in problems.items()}
    failed = [name for name, problem in problems.items() if problem]
    if failed:
        return problem_response(
            request,
            503,
            "not ready: " + "; ".join(f"{name}: {checks[name]}" for name in failed),
            slug="not-ready",
            title="Service not ready",
            errors=[{"check": name, "message": checks[name]} for name in failed],
            extra={"checks": checks},
        )
    return JSONResponse({"status": "ready", "checks": checks})


@router.get(
    "/metrics",
    summary="Prometheus metrics (role viewer)",
    response_class=PlainTextResponse,
    responses=problem_responses(401, 403),
)
async def metrics(svc: ServicesDep, _: Viewer) -> PlainTextResponse:
    """The API's request metrics and the process-wide registry (rb_common.metrics), summed over
    the API processes sharing the port: a scrape authenticates with a viewer key as bearer token
    (Prometheus `authorization.credentials_file`)."""
    text = (await in_thread(svc.metrics.render)).decode()
    return PlainTextResponse(text, media_type="text/plain; version=0.0.4; charset=utf-8")
