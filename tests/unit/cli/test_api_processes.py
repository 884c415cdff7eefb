"""rb_cli.api_processes: how many API processes `rb up` runs, their environment, the port lock,
and whether a process listens."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from rb_cli.api_processes import (
    PortTaken,
    api_env,
    api_process_count,
    claim_port,
    listens,
    process_names,
)
from rb_common.listen import can_share_ports
from rb_common.metrics import MULTIPROC_ENV
from rb_common.settings import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.skipif(not can_share_ports(), reason="one API process where ports are not shared")
def test_the_count_is_the_option_then_the_setting_then_two(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RB_API_PROCESSES", raising=False)
    assert api_process_count(Settings(), None) == 2
    assert api_process_count(Settings(), 3) == 3
    monkeypatch.setenv("RB_API_PROCESSES", "1")
    assert api_process_count(Settings(), None) == 1
    assert api_process_count(Settings(), 4) == 4
    assert process_names(3) == ["api", "api-2", "api-3"]


def test_only_several_processes_share_a_metrics_directory(tmp_path: Path) -> None:
    two = api_env({"X": "1"}, 2, tmp_path, 8080)
    assert two["RB_API_PROCESSES"] == "2" and two["X"] == "1"
    assert two[MULTIPROC_ENV] == str((tmp_path / "metrics" / "api-8080").resolve())
    one = api_env({MULTIPROC_ENV: "/elsewhere"}, 1, tmp_path, 8080)
    assert MULTIPROC_ENV not in one and one["RB_API_PROCESSES"] == "1"


def test_a_port_is_claimed_by_one_stack_at_a_time() -> None:
    port = free_port()
    claim = claim_port(port)
    with pytest.raises(PortTaken):
        claim_port(port)
    claim_port(free_port()).close()  # another port is another lock
    claim.close()
    claim_port(port).close()


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="Linux's /proc")
def test_listens_sees_a_socket_once_it_listens() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        assert not listens(os.getpid(), port), "bound, not listening"
        sock.listen()
        assert listens(os.getpid(), port)
        assert not listens(os.getpid(), free_port())
