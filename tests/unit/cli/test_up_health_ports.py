"""`rb up` gives each probed service its own RB_HEALTH_ADDR: one environment cannot give five
processes one port."""

from __future__ import annotations

import socket

import pytest

from rb_cli.services import PROBED, health_addrs
from rb_common.errors import RbError
from rb_common.settings import Settings


def test_without_rb_health_addr_each_service_gets_a_free_port() -> None:
    addrs = health_addrs(Settings(health_addr=None))
    assert set(addrs) == set(PROBED) == {"recorder", "executor", "scheduler", "notifier"}
    ports = {int(addr.rpartition(":")[2]) for addr in addrs.values()}
    assert len(ports) == len(PROBED)
    for addr in addrs.values():
        host, _, port = addr.rpartition(":")
        assert host == "127.0.0.1"
        with socket.socket() as s:
            s.bind((host, int(port)))  # free when handed out


def test_rb_health_addr_is_the_first_of_consecutive_ports() -> None:
    assert health_addrs(Settings(health_addr="0.0.0.0:9100")) == {
        "recorder": "0.0.0.0:9100",
        "executor": "0.0.0.0:9101",
        "scheduler": "0.0.0.0:9102",
        "notifier": "0.0.0.0:9103",
    }


@pytest.mark.parametrize("bad", ["9100", "host:", "host:port", "host:65534"])
def test_a_bad_rb_health_addr_is_refused(bad: str) -> None:
    with pytest.raises(RbError, match="RB_HEALTH_ADDR must be HOST:PORT"):
        health_addrs(Settings(health_addr=bad))
