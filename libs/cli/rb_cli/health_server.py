"""`/health/live` and `/health/ready` over HTTP for the services that serve nothing else (the API
has its own), so containers and Kubernetes probes can watch them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web

from rb_common.errors import RbError
from rb_common.health import Health


def _app(service: str, health: Health) -> web.Application:
    async def live(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "service": service})

    async def ready(_: web.Request) -> web.Response:
        ok, checks = await health.status()
        body = {"status": "ok" if ok else "unavailable", "service": service, "checks": checks}
        return web.json_response(body, status=200 if ok else 503)

    app = web.Application()
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
