"""`rb up`'s API as two processes on one port (SO_REUSEPORT): both take connections, /metrics
counts every request of both exactly, a process killed with SIGKILL is restarted while the other
answers, and a second `rb up` on the same port is refused instead of joining it."""

from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families
from test_rb_up import BOOTSTRAP_KEY, REPO, free_port, start_up, stop_up

from rb_cli.api_processes import listens

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not sys.platform.startswith("linux"), reason="SO_REUSEPORT spreads connections on Linux"
    ),
]

ROUTE = "/api/v1/runbooks"


def api_pids(up_pid: int) -> list[int]:
    """The API processes `rb up` runs now (its children serving `api`)."""
    pids = []
    for child in Path(f"/proc/{up_pid}/task/{up_pid}/children").read_text().split():
        argv = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        if argv[2:5] == [b"rb_cli", b"serve", b"api"]:
            pids.append(int(child))
    return sorted(pids)


def listing_count(text: str) -> float:
    """`GET /api/v1/runbooks` answered 200, in a Prometheus text exposition (0 if never)."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "rb_api_requests_total" and sample.labels == {
                "method": "GET",
                "route": ROUTE,
                "status": "200",
            }:
                return sample.value
    return 0.0


def per_process(metrics_dir: Path, pid: int, scratch: Path) -> float:
    """What one process counted: its own counter file, read alone by prometheus_client."""
    only = scratch / str(pid)
    only.mkdir(parents=True)
    shutil.copy(metrics_dir / f"counter_{pid}.db", only)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(only))
    return listing_count(generate_latest(registry).decode())


def test_two_api_processes_share_the_port_count_together_and_survive_a_kill(tmp_path: Path) -> None:
    api_port = free_port()
    home = tmp_path / "home"
    env = {
        **os.environ,
        "RB_HOME": str(home),
        "RB_NATS_URL": f"nats://127.0.0.1:{free_port()}",
        "RB_API_ADDR": f"127.0.0.1:{api_port}",
        "RB_RUNBOOKS_DIR": str(REPO / "runbooks"),
        "RB_BOOTSTRAP_ADMIN_KEY": BOOTSTRAP_KEY,
    }
    for name in ("RB_DATABASE_URL", "RB_API_KEY", "RB_API_PROCESSES", "PROMETHEUS_MULTIPROC_DIR"):
        env.pop(name, None)
    process, lines, seen = start_up(env)
    base = f"http://127.0.0.1:{api_port}"
    admin = {"Authorization": f"Bearer {BOOTSTRAP_KEY}"}
    metrics_dir = home / "metrics" / f"api-{api_port}"
    try:
        assert "2 processes on one port" in "".join(seen)
        first, second = api_pids(process.pid)

        def scrape() -> str:
            response = httpx.get(f"{base}/metrics", headers=admin, timeout=10)
            assert response.status_code == 200, response.text
            return response.text

        def counted(expected: float) -> str:
            """A scrape once it counts `expected` listings: a process counts a request right after
            sending its answer, so a scrape reaching the other process can be a moment early."""
            deadline = time.monotonic() + 10
            while True:
                text = scrape()
                if listing_count(text) >= expected or time.monotonic() > deadline:
                    assert listing_count(text) == expected
                    return text
                time.sleep(0.05)

        before = listing_count(scrape())
        # A new connection each: the kernel spreads connections, not requests.
        for _ in range(60):
            assert httpx.get(f"{base}{ROUTE}", headers=admin, timeout=10).status_code == 200
        counted(before + 60)  # one scrape counts both processes' requests
        shares = {pid: per_process(metrics_dir, pid, tmp_path / "one") for pid in (first, second)}
        assert sum(shares.values()) - before == 60
        assert all(share > 0 for share in shares.values()), f"both processes took connections: {shares}"

        # One process killed outright: the other answers every request meanwhile, and `rb up`
        # starts a new one in its place.
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while listens(first, api_port):  # until the kernel has closed its socket
            assert time.monotonic() < deadline, "the killed process still listens"
            time.sleep(0.05)
        for _ in range(40):
            assert httpx.get(f"{base}{ROUTE}", headers=admin, timeout=10).status_code == 200
        deadline = time.monotonic() + 90
        while True:
            pids = api_pids(process.pid)
            if len(pids) == 2 and first not in pids:
                break
            assert time.monotonic() < deadline, f"the killed API process was not restarted: {pids}"
            time.sleep(0.2)
        restarted = next(pid for pid in pids if pid != second)
        log = ""
        while "api exited with -9; restarting" not in log:
            try:
                log += lines.get(timeout=10)
            except queue.Empty:
                pytest.fail(f"rb up did not report the restart: {log}")
        # The killed process's counts stay in the sum (counters never go back).
        counted(before + 100)

        # The restarted process takes connections once it listens.
        deadline = time.monotonic() + 90
        while not listens(restarted, api_port):
            assert time.monotonic() < deadline, "the restarted API process never listened"
            time.sleep(0.2)
        for _ in range(60):
            assert httpx.get(f"{base}{ROUTE}", headers=admin, timeout=10).status_code == 200
        assert per_process(metrics_dir, restarted, tmp_path / "two") > 0
        text = counted(before + 160)
        in_flight = [
            s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name == "rb_api_requests_in_flight"
        ]
        assert in_flight == [1.0], "the scrape itself, summed over the live processes"

        # A second stack on the same port is refused, not spread over with the first.
        other = subprocess.run(
            [sys.executable, "-m", "rb_cli", "up", "--no-load"],
            env={**env, "RB_HOME": str(tmp_path / "other"), "RB_NATS_URL": f"nats://127.0.0.1:{free_port()}"},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert other.returncode == 2, other.stdout + other.stderr
        assert f"RB_API_ADDR 127.0.0.1:{api_port} is in use" in other.stderr, other.stderr
    finally:
        stop_up(process)
