"""ui_screenshot with real Chromium against pages served on loopback: identical, changed and
masked pages, missing baselines, sizes, the egress policy, and a crashed browser."""

from __future__ import annotations

import asyncio
import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from rb_common.settings import Settings
from rb_engine.artifacts import FileArtifactStore
from rb_engine.clock import SystemClock
from rb_engine.steps.base import StepContext, StepFailed
from rb_engine.steps.ui_screenshot import UiScreenshotStep
from rb_engine.visual import BaselineSource

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")

PAGE = """<!doctype html><html><head><style>
body {{ margin: 0; background: #fff; font-family: sans-serif; }}
#card {{ width: 400px; height: 300px; background: #eee; position: relative; }}
#badge {{ position: absolute; left: 20px; top: 20px; width: {badge}px; height: 40px; background: {colour}; }}
#clock {{ position: absolute; left: 20px; top: 200px; font: 28px monospace; }}
</style></head><body><div id="card"><div id="badge"></div><span id="clock">{clock}</span>
<input id="q" style="position:absolute;left:20px;top:100px"><img src="{img}" alt=""></div></body></html>
"""


def page(colour: str = "#1f8a3b", clock: str = "12:00:00", badge: int = 120, img: str = "") -> str:
    return PAGE.format(colour=colour, clock=clock, badge=badge, img=img)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    root = tmp_path_factory.mktemp("site")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()
    server.server_close()


@pytest.fixture
async def plugin() -> Iterator[UiScreenshotStep]:
    step = UiScreenshotStep()
    yield step
    await step.aclose()


def context(tmp_path: Path, baselines: BaselineSource | None = None, allow: tuple[str, ...] = ("127.0.0.1",)) -> StepContext:
    settings = Settings(home=tmp_path / "home", egress_allow=list(allow))
    return StepContext("exec-1", "shot", 1, "exec-1:shot:1", settings, SystemClock(), baselines=baselines)


def write(root: Path, name: str, html: str) -> str:
    (root / name).write_text(html)
    return name


async def shoot(plugin: UiScreenshotStep, ctx: StepContext, url: str, **inputs: object) -> dict:
    return await plugin.run({"url": url, "selector": "#card", **inputs}, ctx)


async def test_identical_page_diffs_under_a_hundredth_of_a_percent(plugin, site, tmp_path: Path) -> None:
    base, root = site
    url = f"{base}/{write(root, 'same.html', page())}"
    baselines = BaselineSource(tmp_path / "screenshots", update=True)
    written = await shoot(plugin, context(tmp_path, baselines), url)
    assert (tmp_path / "screenshots" / "shot.png").is_file() and written["baseline_updated"]
    result = await shoot(plugin, context(tmp_path, BaselineSource(tmp_path / "screenshots")), url)
    comparison = result["comparison"]
    assert comparison["ok"] is True and comparison["ratio"] < 0.0001
    assert comparison["summary"] == "Screenshot diff: 0.00% change (within threshold)"
    shot = result["screenshot"]
    assert (shot["width"], shot["height"]) == (400, 300) and shot["digest"].startswith("sha256:")
    store = FileArtifactStore(tmp_path / "home" / "artifacts")
    assert store.get(shot["digest"]) == (tmp_path / "screenshots" / "shot.png").read_bytes()
    assert store.owners(shot["digest"]) == ["exec-1"]


async def test_a_changed_element_fails_with_its_ratio_and_a_diff_image(plugin, site, tmp_path: Path) -> None:
    base, root = site
    baselines = BaselineSource(tmp_path / "screenshots")
    baselines.directory.mkdir()
    before = await shoot(plugin, context(tmp_path), f"{base}/{write(root, 'a.html', page())}")
    store = FileArtifactStore(tmp_path / "home" / "artifacts")
    baselines.path("shot").write_bytes(store.get(before["screenshot"]["digest"]))
    changed = f"{base}/{write(root, 'b.html', page(colour='#c62828', badge=300))}"
    with pytest.raises(StepFailed) as failed:
        await shoot(plugin, context(tmp_path, baselines), changed)
    # the badge grew from 120x40 to 300x40 and changed colour: 12000 of 120000 pixels
    assert failed.value.message.startswith("Screenshot diff: ") and "over the 1.00% threshold" in failed.value.message
    detail = failed.value.detail
    assert 0.09 < detail["comparison"]["ratio"] < 0.11, detail["comparison"]
    assert f"{detail['comparison']['ratio']:.2%}" in failed.value.message
    assert store.exists(detail["diff"]["digest"]) and store.exists(detail["baseline"]["digest"])
    assert detail["diff"]["width"] == 400
    assert failed.value.retryable is False


async def test_masked_regions_never_count(plugin, site, tmp_path: Path) -> None:
    base, root = site
    baselines = BaselineSource(tmp_path / "screenshots", update=True)
    first = f"{base}/{write(root, 'clock1.html', page(clock='08:15:00 abc'))}"
    second = f"{base}/{write(root, 'clock2.html', page(clock='23:59:59 WXYZ-long'))}"
    await shoot(plugin, context(tmp_path, baselines), first, mask=["#clock"])
    compared = BaselineSource(tmp_path / "screenshots")
    masked = await shoot(plugin, context(tmp_path, compared), second, mask=["#clock"])
    assert masked["comparison"]["changed_pixels"] == 0
    # the same change unmasked is seen (the test can fail)
    with pytest.raises(StepFailed, match="Screenshot diff"):
        await shoot(plugin, context(tmp_path, compared), second, max_diff_ratio=0.0)


async def test_a_missing_baseline_fails_with_the_command_that_creates_it(plugin, site, tmp_path: Path) -> None:
    base, root = site
    baselines = BaselineSource(tmp_path / "screenshots", update_hint="rb test runbooks/x --update-baselines")
    with pytest.raises(StepFailed) as failed:
        await shoot(plugin, context(tmp_path, baselines), f"{base}/{write(root, 'm.html', page())}")
    assert "no baseline screenshot" in failed.value.message
    assert "shot.png" in failed.value.message
    assert "`rb test runbooks/x --update-baselines`" in failed.value.message


async def test_another_size_is_a_clear_failure(plugin, site, tmp_path: Path) -> None:
    base, root = site
    url = f"{base}/{write(root, 's.html', page())}"
    await plugin.run({"url": url, "selector": "#badge"}, context(tmp_path, BaselineSource(tmp_path / "b", update=True)))
    with pytest.raises(StepFailed, match=r"Screenshot size changed: baseline 120x40, new 400x300"):
        await shoot(plugin, context(tmp_path, BaselineSource(tmp_path / "b")), url)


async def test_actions_and_viewport(plugin, site, tmp_path: Path) -> None:
    base, root = site
    url = f"{base}/{write(root, 'act.html', page())}"
    empty = await plugin.run({"url": url, "viewport": {"width": 640, "height": 360}}, context(tmp_path))
    assert (empty["screenshot"]["width"], empty["screenshot"]["height"]) == (640, 360)
    typed = await plugin.run(
        {
            "url": url,
            "viewport": {"width": 640, "height": 360},
            "actions": [{"click": "#q"}, {"fill": "#q", "value": "hello"}, {"press": "End", "selector": "#q"}],
            "wait_for": "#card",
        },
        context(tmp_path),
    )
    assert typed["screenshot"]["digest"] != empty["screenshot"]["digest"]


async def test_loopback_is_refused_unless_allowed(plugin, site, tmp_path: Path) -> None:
    base, root = site
    url = f"{base}/{write(root, 'e.html', page())}"
    with pytest.raises(StepFailed) as failed:
        await shoot(plugin, context(tmp_path, allow=()), url)
    assert "egress refused: 127.0.0.1 (loopback)" in failed.value.message


async def test_subresources_go_through_the_egress_policy(plugin, site, tmp_path: Path) -> None:
    base, root = site
    url = f"{base}/{write(root, 'sub.html', page(img='http://169.254.169.254/latest/meta-data/x.png'))}"
    result = await shoot(plugin, context(tmp_path), url)
    assert any("169.254.169.254 (metadata)" in line for line in result["refused"]), result


async def test_not_http_is_refused(plugin, tmp_path: Path) -> None:
    with pytest.raises(StepFailed, match="needs an http"):
        await plugin.run({"url": "file:///etc/passwd"}, context(tmp_path))


async def test_a_browser_crash_is_a_step_error_and_the_next_step_relaunches(
    plugin, site, tmp_path: Path
) -> None:
    base, root = site
    url = f"{base}/{write(root, 'c.html', page())}"
    await shoot(plugin, context(tmp_path), url)  # launched
    browser = plugin._browser._browser if plugin._browser else None
    assert browser is not None and browser.is_connected()
    # the page loads, then the step waits for an element that never comes: kill Chromium then
    gone = asyncio.Event()
    step = asyncio.create_task(
        shoot(plugin, context(tmp_path), url, wait_for="#never-there", timeout=60)
    )
    browser.once("disconnected", lambda _: gone.set())
    while not step.done() and len(browser.contexts) == 0:
        await asyncio.sleep(0)  # yield to the step until it has opened its context
    await browser.close()
    with pytest.raises(StepFailed) as failed:
        await asyncio.wait_for(step, 30)
    assert "browser error" in failed.value.message or "Chromium" in failed.value.message
    await asyncio.wait_for(gone.wait(), 10)
    again = await shoot(plugin, context(tmp_path), url)  # a new Chromium
    assert again["screenshot"]["width"] == 400


class _Session(http.server.BaseHTTPRequestHandler):
    """/login sets two cookies and redirects to /home, which shows a red block only to a session
    that sends both back; /away redirects to the metadata address."""

    seen: ClassVar[list[tuple[str, str]]] = []

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.seen.append((self.path, self.headers.get("Cookie", "")))
        if self.path in ("/login", "/away"):
            self.send_response(302)
            if self.path == "/login":
                self.send_header("Set-Cookie", "a=1; Path=/")
                self.send_header("Set-Cookie", "b=2; Path=/")
            target = "/home" if self.path == "/login" else "http://169.254.169.254/latest/meta-data/"
            self.send_header("Location", target)
            self.end_headers()
            return
        cookie = self.headers.get("Cookie", "")
        signed_in = "a=1" in cookie and "b=2" in cookie
        block = '<div style="width:300px;height:100px;background:#c00"></div>' if signed_in else ""
        body = f'<html><body style="margin:0"><div id="card" style="width:400px;height:300px">{block}<a id="in" href="/login">in</a></div></body></html>'
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def session_site() -> Iterator[str]:
    _Session.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Session)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


async def test_redirects_and_cookies_go_through_the_egress_route(plugin, session_site: str, tmp_path: Path) -> None:
    baselines = BaselineSource(tmp_path / "s", update=True)
    await shoot(plugin, context(tmp_path, baselines), f"{session_site}/home")  # signed out
    with pytest.raises(StepFailed, match="Screenshot diff"):  # signed in: the red block
        await shoot(
            plugin,
            context(tmp_path, BaselineSource(tmp_path / "s")),
            f"{session_site}/home",
            actions=[{"click": "#in"}, {"wait": "#card div"}],
        )
    # the redirect was followed in the route (cookies set by /login sent to /home), and the
    # browser, not httpx, kept them: the next /home request sends them back too
    assert ("/home", "a=1; b=2") in _Session.seen


async def test_a_redirect_to_a_refused_address_is_refused(plugin, session_site: str, tmp_path: Path) -> None:
    with pytest.raises(StepFailed) as failed:
        await shoot(plugin, context(tmp_path), f"{session_site}/away")
    assert "egress refused: 169.254.169.254 (metadata)" in failed.value.message
