"""`/health/live`, `/health/ready` and `/metrics` (Prometheus) over HTTP for the services that
serve nothing else (the API has its own), so containers, Kubernetes probes and Prometheus can
watch them. This address is meant for the cluster's internal network: like the probes, `/metrics`
needs no credentials here (it holds counts by runbook, step type and status, no secrets)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web

from rb_common.errors import RbError
from rb_common.health import Health
from rb_common.metrics import CONTENT_TYPE, exposition
from rb_common.problems import PROBLEM_JSON, problem_body


def _app(service: str, health: Health) -> web.Application:
    async def live(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "service": service})

    async def ready(request: web.Request) -> web.Response:
        ok, checks = await health.status()
        if ok:
            return web.json_response({"status": "ok", "service": service, "checks": checks})
        failed = {name: why for name, why in checks.items() if why != "ok"} or {
            "starting": "still connecting or migrating: no check registered yet"
        }
        body = problem_body(
            503,
            "not ready: " + "; ".join(f"{name}: {why}" for name, why in failed.items()),
            slug="not-ready",
            title="Service not ready",
            instance=request.path,
            errors=[{"check": name, "message": why} for name, why in failed.items()],
            extra={"service": service, "checks": checks},
        )
        return web.json_response(body, status=503, content_type=PROBLEM_JSON)

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=exposition(), headers={"Content-Type": CONTENT_TYPE})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/health/live", live)
    app.router.add_get("/health/ready", ready)
    return app


@asynccontextmanager
async def health_server(service: str, health: Health, addr: str) -> AsyncIterator[None]:
    host, _, port = addr.rpartition(":")
    if not host or not port.isdigit():
        raise RbError(f"RB_HEALTH_ADDR must be HOST:PORT, not {addr!r}")
    runner = web.AppRunner(_app(service, health), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host.strip("[]"), int(port)).start()
    except OSError as exc:
        await runner.cleanup()
        raise RbError(f"cannot serve health checks on {addr}: {exc.strerror or exc}") from None
    try:
        yield
    finally:
        await runner.cleanup()
