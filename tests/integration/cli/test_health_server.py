"""`RB_HEALTH_ADDR`: the services without an API of their own answer health probes over HTTP."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.integration

NATS_URL = os.environ["RB_TEST_NATS_URL"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Probe:
    def __init__(self, process: subprocess.Popen[bytes], url: str) -> None:
        self.process = process
        self.url = url

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.url + path, timeout=5)

    def wait(self, path: str, status: int, timeout: float = 30) -> httpx.Response:
        deadline = time.monotonic() + timeout
        last: httpx.Response | str = "no answer"
        while time.monotonic() < deadline:
            assert self.process.poll() is None, "the service died"
            try:
                last = self.get(path)
                if last.status_code == status:
                    return last
            except httpx.TransportError as exc:
                last = repr(exc)
            time.sleep(0.1)
        raise AssertionError(f"{path} never answered {status}: {last}")


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Probe]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(service: str, **env: str) -> Probe:
        port = free_port()
        process = subprocess.Popen(
            [sys.executable, "-m", "rb_cli", "serve", service],
            env={
                **os.environ,
                "RB_HOME": str(tmp_path),
                "RB_NATS_URL": NATS_URL,
                "RB_HEALTH_ADDR": f"127.0.0.1:{port}",
                "RB_LOG_LEVEL": "WARNING",
                **env,
            },
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        started.append(process)
        return Probe(process, f"http://127.0.0.1:{port}")

    yield start
    for process in started:
        process.terminate()
    for process in started:
        process.wait(timeout=30)


def test_an_executor_is_ready_once_connected(serve: Callable[..., Probe]) -> None:
    probe = serve("executor")
    assert probe.wait("/health/live", 200).json() == {"status": "ok", "service": "executor"}
    ready = probe.wait("/health/ready", 200).json()
    assert ready["checks"] == {"nats": "ok", "jetstream": "ok"}


def test_a_recorder_without_its_database_is_alive_but_not_ready(serve: Callable[..., Probe]) -> None:
    probe = serve("recorder", RB_DATABASE_URL="postgresql://postgres@127.0.0.1:1/nowhere")
    probe.wait("/health/live", 200)
    body = probe.get("/health/ready")
    assert body.status_code == 503
    assert body.headers["content-type"].startswith("application/problem+json")
    problem = body.json()
    assert problem["status"] == 503 and problem["type"] == "urn:rb:problem:not-ready"
    assert [e["check"] for e in problem["errors"]] == ["starting"], "it is still trying to migrate"


def test_a_recorder_with_its_database_checks_both(serve: Callable[..., Probe], tmp_path: Path) -> None:
    probe = serve("recorder", RB_DATABASE_URL=f"sqlite:///{tmp_path / 'rb.db'}")
    assert probe.wait("/health/ready", 200).json()["checks"] == {"database": "ok", "nats": "ok", "jetstream": "ok"}


def test_a_malformed_health_address_is_a_clear_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "rb_cli", "serve", "worker"],
        env={**os.environ, "RB_HOME": str(tmp_path), "RB_NATS_URL": NATS_URL, "RB_HEALTH_ADDR": "nowhere"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "RB_HEALTH_ADDR must be HOST:PORT" in result.stderr
    assert "Traceback" not in result.stderr
