"""ui_screenshot through the real services: the executor's worker drives Chromium against a page
on loopback, the recorder projects the run, and the API serves the screenshot by its digest to
a viewer (and to nobody without a key)."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import http.server
import io
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image
from services_support import Services, api, approve, wait_terminal

from rb_common.bus import Bus
from rb_common.events import EventType

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="Debian's chromium is not installed"),
]
PAGE = Path(__file__).resolve().parents[3] / "runbooks" / "rb-015-ui-check" / "pages" / "identical"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def page_url() -> Iterator[str]:
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(PAGE))
    handler.log_message = lambda *a, **k: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/index.html"
    server.shutdown()
    server.server_close()


def runbook(runbook_id: str, url: str) -> str:
    return f"""id: {runbook_id}
name: UI check through the services
version: 1.0.0
owner: tests
description: a screenshot taken by a worker
legal_basis: tests
steps:
  - id: shot
    type: ui_screenshot
    timeout: 90s
    inputs:
      url: "{url}"
      selector: "#status-card"
      mask: ["#clock"]
      viewport: {{width: 800, height: 600}}
    outputs: {{digest: "$.screenshot.digest"}}
"""


async def test_a_worker_screenshot_is_served_by_the_api(services: Services, bus: Bus, page_url: str) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}/api/v1"
    services.env.update({"RB_API_ADDR": f"127.0.0.1:{port}", "RB_EGRESS_ALLOW": "127.0.0.1/32"})
    for name in ("recorder", "executor", "api"):
        services.start(name)
    deadline = time.monotonic() + 60
    while True:  # until the API answers ready
        try:
            if api.get(f"http://127.0.0.1:{port}/health/ready", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, services.logs()
        await asyncio.sleep(0.2)

    runbook_id = f"ui-{uuid.uuid4().hex[:8]}"
    created = api.post(f"{base}/runbooks", content=runbook(runbook_id, page_url), headers={"Content-Type": "application/yaml"})
    assert created.status_code == 201, created.text
    assert approve(base, runbook_id).status_code == 200
    started = api.post(f"{base}/runbooks/{runbook_id}/execute", json={})
    assert started.status_code == 202, started.text
    execution_id = started.json()["execution_id"]
    events = await wait_terminal(bus, execution_id, timeout=120)
    succeeded = [e.data for e in events if e.type == EventType.STEP_SUCCEEDED]
    assert succeeded, services.logs()
    shot = succeeded[0]["result"]["screenshot"]
    assert set(shot) == {"digest", "size", "media_type", "width", "height"}  # never the bytes

    viewer = api.post(f"{base}/keys", json={"name": "viewer", "roles": ["viewer"]}).json()["key"]
    deadline = time.monotonic() + 60
    while True:  # until the recorder has projected the execution
        served = httpx.get(f"{base}/artifacts/{shot['digest']}", headers={"Authorization": f"Bearer {viewer}"})
        if served.status_code != 404:
            break
        assert time.monotonic() < deadline, services.logs()
        await asyncio.sleep(0.3)
    assert served.status_code == 200, served.text
    assert served.headers["content-type"] == "image/png"
    assert "sha256:" + hashlib.sha256(served.content).hexdigest() == shot["digest"]
    assert len(served.content) == shot["size"]
    assert Image.open(io.BytesIO(served.content)).size == (shot["width"], shot["height"])
    assert httpx.get(f"{base}/artifacts/{shot['digest']}").status_code == 401
