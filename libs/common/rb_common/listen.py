"""Listening addresses: RB_API_ADDR parsed, sockets several processes share (SO_REUSEPORT), and
whether a port is free. Light on imports: `rb up` uses it before any service starts."""

from __future__ import annotations

import socket
import sys
from typing import Any

# family, type, protocol, sockaddr (as socket.getaddrinfo gives them)
Address = tuple[socket.AddressFamily, socket.SocketKind, int, Any]


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


def can_share_ports() -> bool:
    """Whether the kernel spreads one port's new connections over the processes listening on it
    with SO_REUSEPORT (Linux; elsewhere the option exists without the spreading, or not at all)."""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def addresses(host: str, port: int) -> list[Address]:
    """Every address host:port names, as uvicorn binds them (a name such as `localhost` can give
    an IPv4 and an IPv6 one). Raises OSError when the host does not resolve."""
    found: list[Address] = []
    for family, kind, proto, _, address in socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    ):
        entry: Address = (family, kind, proto, address)
        if entry not in found:
            found.append(entry)
    return found


def reuse_port_sockets(host: str, port: int) -> list[socket.socket]:
    """TCP sockets bound to every address of host:port with SO_REUSEPORT, not listening yet: the
    kernel hands a socket connections only once it listens (uvicorn listens once the app has
    started), and takes a closed one out of the group. Only processes of the same user can share
    a port this way. Raises OSError (the port is taken, the host does not resolve)."""
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, address in addresses(host, port):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def port_in_use(host: str, port: int) -> bool:
    """Whether something listens on host:port (any of its addresses). SO_REUSEADDR: a port left in
    TIME_WAIT by closed connections counts as free, as it does for the server that binds it."""
    for family, kind, proto, address in addresses(host, port):
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                probe.bind(address)
            except OSError:
                return True
    return False
