"""`ui_screenshot`: open a page in Chromium, screenshot it (or one element), compare with a baseline.

The PNG goes to the artifact store (rb_engine.artifacts); the result names it by digest, size
and dimensions, never by bytes. With a baseline (the acceptance pack's `screenshots/<step>.png`
under `rb test`, else the `baseline` input, a PNG next to the runbook) the two are compared with
pixelmatch (rb_engine.visual): over `max_diff_ratio` changed pixels (default 1%), or another
size, fails the step, and the failure records the baseline, the new image and the diff image.
Without a baseline the step only captures.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Literal

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Page
from playwright.async_api import TimeoutError as PlaywrightTimeout

from rb_common.durations import parse_duration
from rb_common.step_specs import SPECS
from rb_engine.artifacts import ArtifactRef, ArtifactStore, artifact_store
from rb_engine.browser import EgressRoute, SharedBrowser
from rb_engine.egress import EgressPolicy, redact_url
from rb_engine.steps.base import SpecValidated, StepContext, StepFailed
from rb_engine.visual import DEFAULT_MAX_DIFF_RATIO, DEFAULT_THRESHOLD, MASK_COLOUR, compare, image_size

DEFAULT_VIEWPORT = {"width": 1280, "height": 720}
DEFAULT_TIMEOUT = 30.0
_LOAD_STATES = ("load", "domcontentloaded", "networkidle")


def store_png(store: ArtifactStore, data: bytes, execution_id: str) -> dict[str, Any]:
    """Put a PNG in the store, linked to its execution; its ref as recorded in events."""
    digest = store.put(data)
    store.link(digest, execution_id)
    width, height = image_size(data)
    return ArtifactRef(digest, len(data), "image/png", width, height).as_dict()


class UiScreenshotStep(SpecValidated):
    spec = SPECS["ui_screenshot"]

    def __init__(self) -> None:
        self._browser: SharedBrowser | None = None

    async def run(self, inputs: dict[str, Any], ctx: StepContext) -> Any:
        url = inputs["url"]
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise StepFailed(f"ui_screenshot needs an http(s) URL, not {redact_url(str(url))!r}", retryable=False)
        png, refused = await self._capture(inputs, ctx)
        store = artifact_store(ctx.settings)
        result: dict[str, Any] = {
            "url": redact_url(url),
            "screenshot": store_png(store, png, ctx.execution_id),
        }
        if refused:
            result["refused"] = refused
        baseline = self._baseline(inputs, ctx, png)
        if baseline is None:
            if ctx.baselines is not None and ctx.baselines.update:
                written = str(ctx.baselines.path(ctx.step_id))
                result["baseline_updated"] = written
                result["comparison"] = {"ratio": 0.0, "ok": True, "summary": f"Screenshot baseline written: {written}"}
            return result
        comparison = compare(
            baseline,
            png,
            threshold=float(inputs.get("threshold", DEFAULT_THRESHOLD)),
            max_diff_ratio=float(inputs.get("max_diff_ratio", DEFAULT_MAX_DIFF_RATIO)),
        )
        result["baseline"] = store_png(store, baseline, ctx.execution_id)
        if comparison.diff_png is not None:
            result["diff"] = store_png(store, comparison.diff_png, ctx.execution_id)
        result["comparison"] = {
            "changed_pixels": comparison.changed,
            "total_pixels": comparison.total,
            "ratio": comparison.ratio,
            "max_diff_ratio": comparison.max_diff_ratio,
            "size_mismatch": comparison.size_mismatch,
            "ok": comparison.ok,
            "summary": comparison.describe(),
        }
        if not comparison.ok:
            raise StepFailed(comparison.describe(), retryable=False, detail=result)
        return result

    def _baseline(self, inputs: dict[str, Any], ctx: StepContext, png: bytes) -> bytes | None:
        """The baseline's bytes, None when there is none to compare with (or it was just written)."""
        if ctx.baselines is not None:
            path = ctx.baselines.path(ctx.step_id)
            if ctx.baselines.update:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(png)
                return None
            if not path.is_file():
                raise StepFailed(
                    f"no baseline screenshot {path}: create it with `{ctx.baselines.update_hint}`",
                    retryable=False,
                )
            return path.read_bytes()
        name = inputs.get("baseline")
        if not name:
            return None
        path = ctx.base_dir / str(name)
        try:
            return Path(path).read_bytes()
        except OSError as exc:
            raise StepFailed(f"cannot read baseline {path}: {exc.strerror or exc}", retryable=False) from None

    async def _capture(self, inputs: dict[str, Any], ctx: StepContext) -> tuple[bytes, list[str]]:
        if self._browser is None:
            self._browser = SharedBrowser(ctx.settings.chromium_path)
        timeout_ms = parse_duration(inputs.get("timeout", DEFAULT_TIMEOUT)) * 1000
        egress = EgressRoute(
            EgressPolicy.from_settings(ctx.settings), ctx.resolve_host, ctx.http_transport
        )
        try:
            context = await self._browser.context(
                viewport={**DEFAULT_VIEWPORT, **(inputs.get("viewport") or {})},
                device_scale_factor=1,
                reduced_motion="reduce",
                color_scheme="light",
                locale="en-US",
                timezone_id="UTC",
                service_workers="block",  # they would fetch outside page.route
            )
        except (PlaywrightError, OSError) as exc:
            raise StepFailed(f"cannot start Chromium: {_first_line(exc)}", retryable=True) from None
        try:
            context.set_default_timeout(timeout_ms)
            await context.route("**/*", egress.handle)
            page = await context.new_page()
            return await self._shoot(page, inputs, timeout_ms), egress.refused
        except PlaywrightTimeout as exc:
            raise StepFailed(f"timed out in the browser: {_first_line(exc)}", retryable=True) from None
        except PlaywrightError as exc:
            refused = f" ({'; '.join(egress.refused)})" if egress.refused else ""
            raise StepFailed(f"browser error: {_first_line(exc)}{refused}", retryable=True) from None
        finally:
            with contextlib.suppress(PlaywrightError):  # crashed: the next step launches another
                await context.close()
            await egress.aclose()

    async def _shoot(self, page: Page, inputs: dict[str, Any], timeout_ms: float) -> bytes:
        wait_for = inputs.get("wait_for")
        wait_until: Literal["load", "domcontentloaded", "networkidle"] = "load"
        if wait_for == "networkidle" or wait_for == "domcontentloaded":
            wait_until = wait_for
        response = await page.goto(inputs["url"], wait_until=wait_until, timeout=timeout_ms)
        if response is not None and response.status >= 400:
            raise StepFailed(
                f"HTTP {response.status} from {redact_url(inputs['url'])}",
                retryable=response.status >= 500 or response.status == 429,
            )
        if wait_for and wait_for not in _LOAD_STATES:
            await page.locator(wait_for).first.wait_for(state="visible")
        for action in inputs.get("actions") or []:
            if "click" in action:
                await page.locator(action["click"]).first.click()
            elif "fill" in action:
                await page.locator(action["fill"]).first.fill(action["value"])
            elif "press" in action:
                target = page.locator(action["selector"]).first if action.get("selector") else page.keyboard
                await target.press(action["press"])
            elif "wait" in action:
                await page.locator(action["wait"]).first.wait_for(state="visible")
        mask = [page.locator(selector) for selector in inputs.get("mask") or []]
        options: dict[str, Any] = {
            "type": "png",
            "animations": "disabled",
            "caret": "hide",
            "mask": mask,
            "mask_color": MASK_COLOUR,
        }
        if inputs.get("selector"):
            return await page.locator(inputs["selector"]).first.screenshot(**options)
        return await page.screenshot(full_page=bool(inputs.get("full_page")), **options)

    async def aclose(self) -> None:
        if self._browser is not None:
            await self._browser.aclose()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
