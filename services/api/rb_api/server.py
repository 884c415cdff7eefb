"""Run the API as a service: uvicorn, programmatically, until `stop` is set."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys

import uvicorn
from fastapi import FastAPI
from sqlalchemy import Engine

from rb_api.app import create_app
from rb_common.bus import Bus
from rb_common.settings import Settings


def parse_addr(addr: str) -> tuple[str, int]:
    """'host:port', ':port' or '[v6]:port' -> (host, port); the host defaults to 127.0.0.1."""
    host, sep, port = addr.strip().rpartition(":")
    if not sep:
        host, port = addr.strip(), "8080"
    host = host.strip("[]") or "127.0.0.1"
    try:
        number = int(port)
    except ValueError:
        raise ValueError(f"RB_API_ADDR {addr!r} is not host:port") from None
    if not 0 <= number <= 65535:
        raise ValueError(f"RB_API_ADDR {addr!r}: port out of range")
    return host, number


def shares_port(settings: Settings) -> bool:
    """Whether this API process binds with SO_REUSEPORT: with RB_API_PROCESSES above 1, on Linux,
    where the kernel spreads new connections over every process listening on the port (elsewhere
    the option exists without the spreading, or not at all)."""
    return settings.api_processes > 1 and sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host:port with SO_REUSEPORT (not listening yet: uvicorn listens once
    the app has started, and the kernel hands a process connections only from then on). Linux
    lets only processes of the same user share a port this way."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


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
    sockets = None
    if shares_port(settings):
        try:
            sockets = [reuse_port_socket(server.config.host, server.config.port)]
        except OSError as exc:
            raise RuntimeError(f"the API cannot bind {settings.api_addr}: {exc}") from exc
    serving = asyncio.create_task(server.serve(sockets=sockets))
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
        server.should_exit = True
        await serving
        if not server.started:
            raise RuntimeError(f"the API did not start on {settings.api_addr} (see the log above)")
    finally:
        for sock in sockets or ():
            sock.close()
        stopping.cancel()
        if not serving.done():
            server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await serving
