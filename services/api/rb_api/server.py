"""Run the API as a service: uvicorn, programmatically, until `stop` is set."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

import uvicorn
from fastapi import FastAPI
from sqlalchemy import Engine

from rb_api.app import create_app
from rb_common.bus import Bus
from rb_common.listen import can_share_ports, parse_addr, reuse_port_sockets
from rb_common.settings import Settings

log = logging.getLogger(__name__)


def shares_port(settings: Settings) -> bool:
    """Whether this API process binds with SO_REUSEPORT, so that others can listen on its port
    too: RB_API_PROCESSES above 1, on Linux (rb_common.listen)."""
    return settings.api_processes > 1 and can_share_ports()


class _Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # the caller owns signals and sets `stop`
        pass


def build_server(app: FastAPI, settings: Settings, *, log_level: str = "info") -> uvicorn.Server:
    host, port = parse_addr(settings.api_addr)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        log_config=None,  # uvicorn's loggers go to the process's handler (rb_common.logs)
        lifespan="on",
        proxy_headers=True,
        access_log=settings.api_access_log,
        timeout_graceful_shutdown=5,
    )
    return _Server(config)


async def serve_api(
    settings: Settings,
    stop: asyncio.Event,
    *,
    engine: Engine | None = None,
    bus: Bus | None = None,
    log_level: str = "info",
) -> None:
    """Serve until `stop` is set (then shut down gracefully); raises if start-up fails."""
    server = build_server(create_app(settings, engine=engine, bus=bus), settings, log_level=log_level)
    sockets: list[socket.socket] | None = None
    if shares_port(settings):
        try:
            sockets = reuse_port_sockets(server.config.host, server.config.port)
        except OSError as exc:
            raise RuntimeError(f"the API cannot bind {settings.api_addr}: {exc}") from exc
        log.info(
            "the API binds %s with SO_REUSEPORT (RB_API_PROCESSES=%d): it listens once started",
            settings.api_addr,
            settings.api_processes,
        )
    serving = asyncio.create_task(server.serve(sockets=sockets))
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
        server.should_exit = True
        await serving
        if not server.started:
            raise RuntimeError(f"the API did not start on {settings.api_addr} (see the log above)")
    finally:
        stopping.cancel()
        if not serving.done():
            server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await serving
        if not server.started:  # once started, uvicorn's shutdown closed them
            for sock in sockets or ():
                sock.close()
