"""The browser `ui_screenshot` drives: one Chromium per worker process, a fresh context per step.

Chromium is launched on first use (Playwright's async API, `RB_CHROMIUM_PATH`, Debian's
`/usr/bin/chromium` by default) and shared by every step the process runs; each step gets its
own context (no cookies, storage or cache shared between steps). A browser that crashed or was
closed is launched again for the next step.

Every request a page makes goes through `EgressRoute`: the browser never opens a connection
itself. The request is checked against the egress policy (`rb_engine.egress`) and sent by
httpx over the pinned address; the browser gets the response (`route.fulfill`). Redirects are
followed here, each hop checked again (Chromium would follow a fulfilled 3xx itself, outside
the route), and the browser gets the last response, at the URL it asked for, with the cookies
every hop set. The browser is launched behind a proxy that does not exist, so a request that
escapes the route fails instead of reaching the network. A refused request is aborted and
listed in the step's result.
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
MAX_REDIRECTS = 10
# Nothing leaves the browser but through page.route: a request that escapes it (Chromium follows
# some redirects and prefetches itself) meets a proxy that is not there and fails.
_NO_NETWORK = ["--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=<-loopback>"]
_LAUNCH_ARGS = [
    *_NO_NETWORK,
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
    _transport: httpx.AsyncBaseTransport | None = None

    def _client(self, url: httpx.URL, cookie_header: str | None) -> httpx.AsyncClient:
        """A client for one browser request: the shared (egress-checked) transport, and a cookie
        jar holding only what the browser sent, so cookies set along a redirect chain reach its
        later hops on the same site and nothing outlives the request."""
        if self._transport is None:
            self._transport = self.transport or EgressTransport(self.policy, self.resolve)
        jar = httpx.Cookies()
        for part in (cookie_header or "").split(";"):
            name, sep, value = part.strip().partition("=")
            if sep and name:
                jar.set(name, value, domain=url.host)
        return httpx.AsyncClient(
            transport=self._transport,
            follow_redirects=True,  # here, hop by hop through the egress policy: Chromium
            max_redirects=MAX_REDIRECTS,  # would follow a fulfilled 3xx itself, unrouted
            trust_env=False,
            cookies=jar,
            timeout=httpx.Timeout(60.0, connect=15.0),
        )

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
        sent = await request.all_headers()
        headers = {k: v for k, v in sent.items() if k.lower() not in ("host", "content-length", "cookie")}
        try:
            client = self._client(httpx.URL(url), sent.get("cookie"))
            response = await client.request(request.method, url, headers=headers, content=request.post_data_buffer)
        except EgressRefused as exc:
            self.refused.append(exc.message)
            await route.abort("blockedbyclient")
            return
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            self.refused.append(f"{redact_url(url)}: {exc or type(exc).__name__}")
            await route.abort("failed")
            return
        answer: dict[str, str] = {}
        cookies = [v for hop in response.history for k, v in hop.headers.multi_items() if k.lower() == "set-cookie"]
        for name, value in response.headers.multi_items():
            key = name.lower()
            if key == "set-cookie":
                cookies.append(value)
            elif key not in _DROP_RESPONSE_HEADERS:
                answer[key] = value
        if cookies:
            answer["set-cookie"] = "\n".join(cookies)  # Playwright takes several, one per line
        await route.fulfill(status=response.status_code, headers=answer, body=response.content)

    async def aclose(self) -> None:
        if self._transport is not None and self.transport is None:
            await self._transport.aclose()
        self._transport = None
