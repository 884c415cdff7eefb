"""The stack for the console's end-to-end tests: recorder, executor, scheduler (the alert router)
and API as OS processes on
the session's NATS and PostgreSQL (the API serving web/dist), and Chromium driven by Playwright.

One stack serves the whole module (starting one takes seconds); each test has its own browser
context, so its own sessionStorage, and saves a screenshot under its pytest tmp dir.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

ROOT = Path(__file__).resolve().parents[3]
CHROMIUM = "/usr/bin/chromium"
sys.path.insert(0, str(ROOT / "tests" / "integration" / "services"))  # services_support, by name

from services_support import ADMIN, ADMIN_KEY, NATS_URL, Services, _delete_streams  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Stack:
    """The services of one module, and what the tests ask the API directly."""

    def __init__(self, services: Services, port: int) -> None:
        self.services = services
        self.url = f"http://127.0.0.1:{port}"
        self.base = f"{self.url}/api/v1"
        self.http = httpx.Client(headers=ADMIN, timeout=10)
        self._approver: dict[str, str] | None = None

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if self.http.get(f"{self.url}/health/ready", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError("API not ready:\n" + self.services.logs())

    def key(self, name: str, *roles: str) -> str:
        made = self.http.post(f"{self.base}/keys", json={"name": f"{name}-{uuid.uuid4().hex[:6]}", "roles": list(roles)})
        assert made.status_code == 201, made.text
        return str(made.json()["key"])

    def register(self, text: str) -> str:
        """Register and approve (as a second admin: four eyes) a runbook; its id."""
        created = self.http.post(f"{self.base}/runbooks", content=text, headers={"Content-Type": "application/yaml"})
        assert created.status_code == 201, created.text
        runbook_id = str(created.json()["id"])
        if self._approver is None:
            self._approver = {"Authorization": f"Bearer {self.key('second-admin', 'admin')}"}
        approved = self.http.post(f"{self.base}/runbooks/{runbook_id}/approve", headers=self._approver)
        assert approved.status_code == 200, approved.text
        return runbook_id

    def execute(self, runbook_id: str, params: dict[str, Any] | None = None) -> str:
        r = self.http.post(f"{self.base}/runbooks/{runbook_id}/execute", json={"params": params or {}})
        assert r.status_code == 202, r.text
        return str(r.json()["execution_id"])

    def wait_status(self, execution_id: str, *statuses: str, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            r = self.http.get(f"{self.base}/executions/{execution_id}")
            last = r.json() if r.status_code == 200 else r.text
            if r.status_code == 200 and last["status"] in statuses:
                return dict(last)
            time.sleep(0.2)
        raise AssertionError(f"{execution_id} never {statuses}: {last}\n" + self.services.logs()[-4000:])


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, postgres_database: str) -> Iterator[Stack]:
    if not (ROOT / "web" / "dist" / "index.html").is_file():
        pytest.fail("the console is not built: bash scripts/build-web.sh (scripts/test runs it)")
    home = tmp_path_factory.mktemp("web-stack")
    namespace = f"w{uuid.uuid4().hex[:10]}"
    port = free_port()
    env = {
        **os.environ,
        "RB_HOME": str(home),
        "RB_NATS_URL": NATS_URL,
        "RB_NAMESPACE": namespace,
        "RB_DATABASE_URL": postgres_database,
        "RB_API_ADDR": f"127.0.0.1:{port}",
        "RB_TASK_ACK_WAIT": "3",
        "RB_RECORDER_CONSUMER": f"recorder-web-{uuid.uuid4().hex[:8]}",
        "RB_RECORDER_DELIVER": "new",
        "RB_BOOTSTRAP_ADMIN_KEY": ADMIN_KEY,
        "RB_EGRESS_ALLOW": "127.0.0.1/32",  # the retry test's flaky endpoint is on loopback
        "RB_ALERTMANAGER_TOKEN": ADMIN_KEY,  # the alerts test posts as Alertmanager with it
    }
    services = Services(home, env)
    services.cwd = ROOT
    for name in ("recorder", "executor", "scheduler", "api"):
        services.start(name)
    made = Stack(services, port)
    try:
        made.wait_ready()
        yield made
    finally:
        made.http.close()
        services.stop_all()
        # A thread of its own: pytest-asyncio may have a loop running in this one.
        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, _delete_streams(namespace)).result(timeout=30)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: apt-get install -y chromium (scripts/test does)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


class Console:
    """One browser context on the console; console errors and page errors are collected."""

    def __init__(self, context: BrowserContext, stack: Stack, shots: Path) -> None:
        self.context = context
        self.stack = stack
        self.page: Page = context.new_page()
        self.shots = shots
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))

    def sign_in(self, key: str) -> None:
        self.page.goto(self.stack.url + "/")
        self.page.fill("#api-key", key)
        self.page.keyboard.press("Enter")  # keyboard first: the form submits on Enter
        self.page.wait_for_selector("[data-testid=who]")

    def go(self, fragment: str) -> None:
        self.page.evaluate("f => { window.location.hash = f }", fragment)

    def shot(self, name: str) -> Path:
        path = self.shots / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        assert path.stat().st_size > 0
        return path


@pytest.fixture
def console(browser: Browser, stack: Stack, tmp_path: Path) -> Iterator[Console]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    made = Console(context, stack, tmp_path)
    yield made
    context.close()
    assert made.errors == [], made.errors
