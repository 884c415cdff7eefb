"""The browser `ui_screenshot` drives: one Chromium per worker process, a fresh context per step.

Chromium is launched on first use (Playwright's async API, `RB_CHROMIUM_PATH`, Debian's
`/usr/bin/chromium` by default) and shared by every step the process runs; each step gets its
own context (no cookies, storage or cache shared between steps). A browser that crashed or was
closed is launched again for the next step.

Every request a page makes goes through `EgressRoute`: the browser never opens a connection
itself. The request is checked against the egress policy (`rb_engine.egress`) and sent by
httpx over the pinned address; the browser gets the response (`route.fulfill`). Redirects come
back to the browser as they are, so each hop is checked again. A refused request is aborted
and listed in the step's result.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from playwright.async_api import Browser, BrowserContext, Playwright, Route, async_playwright

from rb_engine.egress import EgressPolicy, EgressRefused, EgressTransport, Resolver, redact_url

# Hop-by-hop headers, and those httpx has already acted on (the body it returns is decoded).
_DROP_RESPONSE_HEADERS = frozenset(
    {"content-encoding", "content-length", "transfer-encoding", "connection", "keep-alive"}
)
_LAUNCH_ARGS = [
    "--no-sandbox",  # workers run as root in containers; pages are confined by the egress route
    "--disable-dev-shm-usage",
    "--font-render-hinting=none",  # the same glyphs on every run: stable screenshots
    "--disable-gpu",
    "--hide-scrollbars",
]


class SharedBrowser:
    """One Chromium for the process, launched lazily; relaunched if it died."""

    def __init__(self, executable: Path) -> None:
        self.executable = executable
        self._playwright: Playwright | None = None
        self._browser: Browser | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock: asyncio.Lock | None = None

    async def context(self, **options: Any) -> BrowserContext:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a new event loop (rb test runs one per scenario)
            self._playwright = self._browser = None
            self._loop, self._lock = loop, asyncio.Lock()
        assert self._lock is not None
        async with self._lock:
            if self._browser is None or not self._browser.is_connected():
                await self._launch()
            assert self._browser is not None
            return await self._browser.new_context(**options)

    async def _launch(self) -> None:
        if not self.executable.exists():
            raise FileNotFoundError(
                f"no Chromium at {self.executable} (install Debian's `chromium`, or set RB_CHROMIUM_PATH)"
            )
        if self._playwright is None:
            self._playwright = await async_playwright().start()
        self._browser = await self._playwright.chromium.launch(
            executable_path=str(self.executable), args=_LAUNCH_ARGS, headless=True
        )

    async def aclose(self) -> None:
        """Close the browser and the Playwright driver, if they belong to the running loop."""
        if self._loop is not asyncio.get_running_loop():
            return
        browser, playwright = self._browser, self._playwright
        self._browser = self._playwright = None
        if browser is not None:
            with contextlib.suppress(Exception):  # already gone (crashed): nothing left to close
                await browser.close()
        if playwright is not None:
            await playwright.stop()


@dataclass
class EgressRoute:
    """The page's network, through the egress policy: `await page.route("**/*", route.handle)`."""

    policy: EgressPolicy
    resolve: Resolver | None = None
    transport: httpx.AsyncBaseTransport | None = None  # injected (tests): used as it is
    refused: list[str] = field(default_factory=list)
    _client: httpx.AsyncClient | None = None

    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                transport=self.transport or EgressTransport(self.policy, self.resolve),
                follow_redirects=False,
                trust_env=False,
                timeout=httpx.Timeout(60.0, connect=15.0),
            )
        return self._client

    async def handle(self, route: Route) -> None:
        request = route.request
        url = request.url
        if not url.startswith(("http://", "https://")):
            if url.startswith(("data:", "blob:", "about:")):
                await route.continue_()
                return
            self.refused.append(f"{redact_url(url)}: scheme not allowed")
            await route.abort("blockedbyclient")
            return
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        try:
            response = await self.client().request(
                request.method, url, headers=headers, content=request.post_data_buffer
            )
        except EgressRefused as exc:
            self.refused.append(exc.message)
            await route.abort("blockedbyclient")
            return
        except httpx.HTTPError as exc:
            self.refused.append(f"{redact_url(url)}: {exc or type(exc).__name__}")
            await route.abort("failed")
            return
        await route.fulfill(
            status=response.status_code,
            headers={
                k: v for k, v in response.headers.items() if k.lower() not in _DROP_RESPONSE_HEADERS
            },
            body=response.content,
        )

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
