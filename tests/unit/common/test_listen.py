"""rb_common.listen: RB_API_ADDR parsed, SO_REUSEPORT sockets, whether a port is free."""

from __future__ import annotations

import socket

import pytest

from rb_common.listen import can_share_ports, parse_addr, port_in_use, reuse_port_sockets


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_parse_addr() -> None:
    assert parse_addr("0.0.0.0:9000") == ("0.0.0.0", 9000)
    assert parse_addr(":8081") == ("127.0.0.1", 8081)
    assert parse_addr("[::1]:8082") == ("::1", 8082)
    with pytest.raises(ValueError, match="not host:port"):
        parse_addr("host:http")
    with pytest.raises(ValueError, match="out of range"):
        parse_addr("host:70000")


def test_a_port_is_in_use_while_something_listens_on_it() -> None:
    port = free_port()
    assert not port_in_use("127.0.0.1", port)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", port))
        listener.listen()
        assert port_in_use("127.0.0.1", port)
    assert not port_in_use("127.0.0.1", port)


@pytest.mark.skipif(not can_share_ports(), reason="SO_REUSEPORT spreads connections on Linux only")
def test_reuse_port_sockets_share_a_port_and_a_plain_listener_blocks_them() -> None:
    port = free_port()
    first, second = reuse_port_sockets("127.0.0.1", port), reuse_port_sockets("127.0.0.1", port)
    try:
        for sock in first + second:
            sock.listen()
        assert port_in_use("127.0.0.1", port)
    finally:
        for sock in first + second:
            sock.close()
    other = free_port()
    with socket.socket() as plain:
        plain.bind(("127.0.0.1", other))
        plain.listen()
        with pytest.raises(OSError):
            reuse_port_sockets("127.0.0.1", other)


def test_an_unresolvable_host_raises_oserror() -> None:
    with pytest.raises(OSError):
        port_in_use("no-such-host.invalid", 8080)
