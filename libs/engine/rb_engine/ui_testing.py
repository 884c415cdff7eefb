"""What `rb test` adds for UI steps: the fixture's page served on loopback, and the screenshots
an execution took (for the per-screenshot lines and the reports)."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rb_common.errors import FixtureError
from rb_common.events import Event, EventType
from rb_common.settings import Settings
from rb_engine.fixtures import Fixture
from rb_engine.visual import BaselineSource


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # no access log on the test output
        pass


@contextmanager
def fixture_environment(
    fixture: Fixture, fixture_dir: Path, settings: Settings
) -> Iterator[tuple[Fixture, Settings]]:
    """The fixture and settings for one run: its `serve` directory served on 127.0.0.1 (the URL
    in its parameter) and its `egress_allow` added to the policy, for this run only."""
    if fixture.egress_allow:
        settings = settings.model_copy(update={"egress_allow": [*settings.egress_allow, *fixture.egress_allow]})
    if fixture.serve is None:
        yield fixture, settings
        return
    root = (fixture_dir / fixture.serve.dir).resolve()
    if not root.is_dir():
        raise FixtureError(f"serve.dir {fixture.serve.dir!r}: no such directory ({root})")
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="rb-test-pages", daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        params = {**fixture.params, fixture.serve.param: url}
        yield fixture.model_copy(update={"params": params}), settings
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@dataclass(frozen=True)
class Screenshot:
    """One ui_screenshot attempt's images (artifact refs) and its comparison."""

    step_id: str
    ok: bool
    screenshot: dict[str, Any] | None
    baseline: dict[str, Any] | None = None
    diff: dict[str, Any] | None = None
    summary: str = ""
    ratio: float | None = None


def screenshots_of(events: list[Event]) -> list[Screenshot]:
    """The last attempt of every ui_screenshot step, in the order they ended."""
    types: dict[str, str] = {}
    found: dict[str, Screenshot] = {}
    for event in events:
        data = event.data
        if event.type == EventType.STEP_SCHEDULED:
            types[data["step_id"]] = data.get("step_type", "")
        elif event.type in (EventType.STEP_SUCCEEDED, EventType.STEP_FAILED) and data.get("phase") != "rollback":
            sid = data.get("step_id", "")
            if types.get(sid) != "ui_screenshot":
                continue
            body = data.get("result") if event.type == EventType.STEP_SUCCEEDED else data.get("detail")
            if not isinstance(body, dict):
                continue
            comparison = body.get("comparison") or {}
            summary = comparison.get("summary") or (
                f"Screenshot baseline written: {body['baseline_updated']}"
                if body.get("baseline_updated")
                else "Screenshot captured (no baseline to compare with)"
            )
            found.pop(sid, None)
            found[sid] = Screenshot(
                step_id=sid,
                ok=event.type == EventType.STEP_SUCCEEDED,
                screenshot=body.get("screenshot"),
                baseline=body.get("baseline"),
                diff=body.get("diff"),
                summary=summary,
                ratio=comparison.get("ratio"),
            )
    return list(found.values())


@dataclass(frozen=True)
class UiOptions:
    """How `rb test` runs ui_screenshot steps for one scenario."""

    fixture_dir: Path  # `serve.dir` is relative to it
    baselines_dir: Path  # the pack's screenshots/
    update: bool = False  # --update-baselines
    hint: str = "rb test PACK --update-baselines"

    def baselines(self, fixture: Fixture) -> BaselineSource:
        """Baselines are written only from scenarios that expect success: a scenario that shows
        a regression (expects the step to fail) never becomes the baseline."""
        expects_success = fixture.expect is None or fixture.expect.status.upper() == "SUCCEEDED"
        return BaselineSource(self.baselines_dir, self.update and expects_success, self.hint)
