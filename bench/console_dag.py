"""How fast the web console draws a big runbook's DAG in Chromium (issue 17: 200 steps < 1 s).

Starts `rb up --no-load` (its own nats-server, SQLite, every service) in a scratch RB_HOME on a
free port, registers a runbook of --steps steps (each depending on the one before and on one
seven back; every tenth has a rollback block, drawn as its own dashed node), then, in Chromium
(Playwright, /usr/bin/chromium), opens the runbook's page --runs times and measures from the
moment the page's route changes to the moment every node of the DAG is in the DOM and visible:
the API call for the runbook, the dagre layout and React Flow's render and measurement.

    bash scripts/build-web.sh && .venv/bin/python bench/console_dag.py [--steps 200] [--runs 7]

Measured (2 shared cores, Debian Chromium 156 headless): 200 steps, 220 nodes: median 254 ms, max 308 ms,
first (cold) 836 ms. With dagre's layout for all sizes it was a median of 1557 ms: dagre alone
took 1.6 s on this graph, hence rb's own layering above 60 nodes (web/src/dag.ts).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]


def runbook(steps: int) -> str:
    lines = [
        "id: bench-dag",
        "name: A big DAG",
        "version: 1.0.0",
        "owner: bench",
        'legal_basis: "benchmark"',
        "steps:",
    ]
    for i in range(1, steps + 1):
        deps = sorted({d for d in (i - 1, i - 7) if d >= 1})
        lines.append(f"  - id: s{i:03d}")
        lines.append("    type: transform")
        lines.append(f"    inputs: {{i: {i}}}")
        lines.append("    outputs: {i: $.i}")
        if deps:
            lines.append(f"    depends_on: [{', '.join(f's{d:03d}' for d in deps)}]")
        if i % 10 == 0:
            lines.append("    rollback: {type: transform, inputs: {undo: " + str(i) + "}}")
    return "\n".join(lines) + "\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    if not (ROOT / "web" / "dist" / "index.html").is_file():
        sys.exit("build the console first: bash scripts/build-web.sh")
    home = Path(tempfile.mkdtemp(prefix="rb-bench-dag-"))
    port = free_port()
    env = {**os.environ, "RB_HOME": str(home), "RB_API_ADDR": f"127.0.0.1:{port}"}
    env.pop("RB_NATS_URL", None)
    env.pop("RB_DATABASE_URL", None)
    up = subprocess.Popen(
        [sys.executable, "-m", "rb_cli", "up", "--no-load"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while not (home / "admin.key").is_file() or not _ready(base):
            if time.monotonic() > deadline or up.poll() is not None:
                sys.exit("rb up did not come up")
            time.sleep(0.3)
        key = (home / "admin.key").read_text().strip()
        created = httpx.post(
            f"{base}/api/v1/runbooks",
            content=runbook(args.steps),
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/yaml"},
            timeout=30,
        )
        assert created.status_code == 201, created.text
        nodes = args.steps + args.steps // 10
        print(_measure(base, key, nodes, args.runs, args.steps))
    finally:
        os.killpg(up.pid, signal.SIGTERM)
        up.wait(timeout=30)


def _ready(base: str) -> bool:
    try:
        return httpx.get(f"{base}/health/ready", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _measure(base: str, key: str, nodes: int, runs: int, steps: int) -> str:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(base + "/")
        page.fill("#api-key", key)
        page.keyboard.press("Enter")
        page.wait_for_selector("[data-testid=who]")
        times: list[float] = []
        for _ in range(runs + 1):  # the first warms the caches of the browser and the API
            page.evaluate("window.location.hash = '#/runbooks'")
            page.wait_for_selector("tr[data-runbook='bench-dag']")
            start = page.evaluate("() => { window.location.hash = '#/runbooks/bench-dag'; return performance.now() }")
            page.wait_for_function(
                """n => {
                    const found = document.querySelectorAll('.react-flow__node');
                    return found.length === n && [...found].every(e => getComputedStyle(e).visibility !== 'hidden');
                }""",
                arg=nodes,
                polling="raf",
                timeout=30_000,
            )
            times.append(page.evaluate("performance.now()") - start)
        browser.close()
    measured = times[1:]
    return (
        f"DAG of {steps} steps ({nodes} nodes with rollbacks) drawn in Chromium, route change to every "
        f"node visible, {len(measured)} runs: median {statistics.median(measured):.0f} ms, "
        f"max {max(measured):.0f} ms (first, cold: {times[0]:.0f} ms)"
    )


if __name__ == "__main__":
    main()
