"""rb test / rb replay with ui_screenshot, as an operator runs them: the example pack against its
bundled demo page (real Chromium), baselines, the JUnit and HTML reports, replay and tampering."""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from junitparser import JUnitXml
from playwright.sync_api import sync_playwright

REPO = Path(__file__).resolve().parents[3]
PACK = REPO / "runbooks" / "rb-015-ui-check"
CHROMIUM = Path("/usr/bin/chromium")

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed"),
]


def rb(*args: str, home: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "RB_HOME": str(home), "NO_COLOR": "1", "COLUMNS": "200", **env}
    return subprocess.run(
        [sys.executable, "-m", "rb_cli", *args], capture_output=True, text=True, env=environ, cwd=REPO, timeout=180
    )


def executions(home: Path, kind: str = "test-executions") -> list[str]:
    """Recorded runs, oldest first: `rb test`'s scenario runs (kept apart from real runs) by
    default, `rb run`'s with kind="executions"."""
    runs = (home / kind).glob("*.jsonl")
    return [p.stem for p in sorted(runs, key=lambda p: p.stat().st_mtime)]


@pytest.fixture(scope="module")
def tested(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """One `rb test` of the example pack with both reports (shared: Chromium is slow to start)."""
    home = tmp_path_factory.mktemp("home")
    result = rb(
        "test", str(PACK), "--junit", str(home / "report.xml"), "--html", str(home / "report.html"), home=home
    )
    return home, result


def test_the_pack_passes_and_prints_the_ratio_per_screenshot(tested) -> None:
    _, result = tested
    assert result.returncode == 0, result.stdout + result.stderr
    assert "✓ Screenshot diff: 0.00% change (within threshold) — capture" in result.stdout
    assert "over the 1.00% threshold" in result.stdout
    assert "PASS 2/2 scenarios passed" in result.stdout


def test_the_junit_file_is_valid(tested) -> None:
    home, _ = tested
    xml = JUnitXml.fromfile(str(home / "report.xml"))
    suites = list(xml)
    assert len(suites) == 1 and suites[0].tests == 2 and suites[0].failures == 0
    cases = list(suites[0])
    assert [c.name for c in cases] == [
        "the page as it should look matches its baseline",
        "a changed status badge is a visual regression",
    ]
    assert all(c.is_passed for c in cases)
    assert "Screenshot diff: 0.00% change" in (cases[0].system_out or "")


def test_the_html_report_shows_baseline_new_and_diff_for_every_screenshot(tested) -> None:
    home, _ = tested
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            page = browser.new_page()
            # offline: the report must not need anything but itself
            page.route("**/*", lambda route: route.abort() if route.request.url.startswith("http") else route.continue_())
            page.goto((home / "report.html").as_uri())
            page.wait_for_load_state("load")
            shots = page.eval_on_selector_all(
                ".screenshot",
                """els => els.map(e => ({
                    step: e.dataset.step,
                    images: [...e.querySelectorAll('img')].map(i => ({
                        role: i.closest('figure').dataset.role, ok: i.complete && i.naturalWidth > 0}))}))""",
            )
            text = page.inner_text("body")
        finally:
            browser.close()
    assert len(shots) == 2, shots
    for shot in shots:
        assert [i["role"] for i in shot["images"]] == ["baseline", "new", "diff"], shot
        assert all(i["ok"] for i in shot["images"]), shot
    for heading in ("Checks", "Steps", "KPIs", "Assumptions", "Screenshots"):
        assert heading in text


def test_the_recorded_run_replays_verified_and_a_tampered_blob_is_named(tested) -> None:
    home, _ = tested
    identical, changed = executions(home)
    for ex in (identical, changed):
        replay = rb("replay", ex, home=home)
        assert replay.returncode == 0, replay.stdout + replay.stderr
        assert "REPLAY VERIFIED" in replay.stdout
        assert "Screenshot diff: 0.00% change (within threshold)" in replay.stdout
    blob = next(p for p in (home / "artifacts").glob("??/*") if p.is_file())
    original = blob.read_bytes()
    try:
        blob.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
        results = [rb("replay", ex, home=home) for ex in (identical, changed)]
        deviating = [r for r in results if r.returncode == 1]
        assert deviating, [r.stdout for r in results]
        assert f"sha256:{blob.name} was tampered with" in deviating[0].stdout
        assert "REPLAY DEVIATES" in deviating[0].stdout
    finally:
        blob.write_bytes(original)


def test_a_missing_baseline_fails_with_the_command_that_creates_it(tmp_path: Path) -> None:
    pack = tmp_path / "pack"
    shutil.copytree(PACK, pack)
    shutil.rmtree(pack / "screenshots")
    missing = rb("test", str(pack), home=tmp_path / "home")
    assert missing.returncode == 1
    assert f"create it with `rb test {pack} --update-baselines`" in missing.stdout
    updated = rb("test", str(pack), "--update-baselines", home=tmp_path / "home")
    assert updated.returncode == 0, updated.stdout
    assert "Screenshot baseline written" in updated.stdout
    assert (pack / "screenshots" / "capture.png").is_file()
    again = rb("test", str(pack), home=tmp_path / "home")
    assert again.returncode == 0, again.stdout
    assert "0.00% change (within threshold)" in again.stdout


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "site"
    shutil.copytree(PACK / "pages" / "identical", root)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()
    server.server_close()


def test_replay_live_captures_again_and_reports_the_pixel_diff(tmp_path: Path, served) -> None:
    url, root = served
    home = tmp_path / "home"
    run = rb("run", str(PACK), "-p", f"base_url={url}", home=home, RB_EGRESS_ALLOW="127.0.0.1")
    assert run.returncode == 0, run.stdout + run.stderr
    (ex,) = executions(home, "executions")
    same = rb("replay", ex, "--live", home=home, RB_EGRESS_ALLOW="127.0.0.1")
    assert same.returncode == 0, same.stdout + same.stderr
    assert "Screenshot diff: 0.00% change (within threshold) (live, against the recorded image)" in same.stdout
    shutil.copy(PACK / "pages" / "changed" / "index.html", root / "index.html")
    changed = rb("replay", ex, "--live", home=home, RB_EGRESS_ALLOW="127.0.0.1")
    assert changed.returncode == 1, changed.stdout
    assert "over the 1.00% threshold) (live, against the recorded image)" in changed.stdout
    assert "screenshot (live)" in changed.stdout
