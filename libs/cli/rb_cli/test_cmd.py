"""`rb test`: a runbook against fixtures, or a whole acceptance pack. Scenario runs are recorded
under RB_HOME/test-executions, apart from real runs (`rb replay --all` never sees them)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from rb_cli.output import check_line
from rb_cli.resolve import load_checked
from rb_cli.sources import test_events_dir
from rb_cli.stack import cli_settings
from rb_cli.ui import console, examples
from rb_common.errors import RbError
from rb_common.settings import Settings
from rb_engine.engine import run_local
from rb_engine.fixtures import Fixture, load_fixture
from rb_engine.reports.write import write_reports
from rb_engine.testing import TestOutcome, check_execution, load_expected, load_pack
from rb_engine.ui_testing import UiOptions, fixture_environment, screenshots_of

EXAMPLES = examples(
    "rb test runbooks/rb-001-entity-enrichment           # every scenario of an acceptance pack",
    "rb test runbooks/rb-002-disk-pressure/runbook.yaml --fixture F.yaml   # one fixture",
    "rb test runbooks/rb-015-ui-check --junit report.xml --html report.html",
    "rb test runbooks/rb-015-ui-check --update-baselines   # write screenshots/<step>.png",
)


def _run_test(
    name: str,
    runbook_path: Path,
    runbook: Any,
    fixture: Fixture,
    settings: Settings,
    live: bool,
    expected_path: Path | None,
    out: Console,
    ui: UiOptions | None = None,
) -> TestOutcome:
    ui = ui or UiOptions(fixture_dir=runbook_path.parent, baselines_dir=runbook_path.parent / "screenshots")
    events: list[Any] = []
    started = time.monotonic()
    with fixture_environment(fixture, ui.fixture_dir, settings) as (fixture, settings):
        state = asyncio.run(
            run_local(
                runbook,
                settings,
                base_dir=runbook_path.parent,
                fixture=fixture,
                live=live,
                actor="rb-test",
                events_dir=test_events_dir(settings),
                on_event=lambda event, _: events.append(event),
                baselines=ui.baselines(fixture),
            )
        )
    expected = (expected_path.name, load_expected(expected_path)) if expected_path else None
    outcome = TestOutcome(
        name=name,
        execution_id=state.execution_id,
        checks=check_execution(runbook, state, fixture.expect, expected),
        state=state,
        screenshots=screenshots_of(events),
        seconds=time.monotonic() - started,
    )
    out.print(f"[bold]{escape(name)}[/bold] [dim]execution {state.execution_id}[/dim]")
    for shot in outcome.screenshots:
        check_line(out, shot.ok, shot.summary, shot.step_id)
    for check in outcome.checks:
        check_line(out, check.ok, check.label, check.detail)
    return outcome


def _pack_or_fail(target: str, fixture: Path | None) -> Path | None:
    """The acceptance pack directory TARGET names, or None when TARGET is a runbook + --fixture."""
    path = Path(target)
    if path.is_dir() and (path / "acceptance.yml").is_file() and fixture is None:
        return path
    if fixture is not None:
        return None
    if path.is_dir():
        raise RbError(
            f"{target}: no acceptance.yml in this directory; give --fixture FILE to test its runbook"
        )
    if path.is_file():
        raise RbError(f"{target}: give --fixture FILE, or test an acceptance pack directory")
    raise RbError(
        f"{target}: no such directory (an acceptance pack: runbook.yaml, acceptance.yml, fixtures/)"
    )


def test(
    target: Annotated[
        str, typer.Argument(metavar="TARGET", help="acceptance pack directory, or a runbook with --fixture")
    ],
    fixture: Annotated[Path | None, typer.Option(metavar="FILE", help="fixture file (JSON or YAML)")] = None,
    live: Annotated[bool, typer.Option(help="run external steps that have no stub for real")] = False,
    update_baselines: Annotated[
        bool, typer.Option(help="write ui_screenshot baselines (screenshots/<step>.png) instead of comparing")
    ] = False,
    junit: Annotated[Path | None, typer.Option(metavar="FILE", help="write a JUnit XML report here")] = None,
    html: Annotated[
        Path | None, typer.Option(metavar="FILE", help="write a self-contained HTML report here")
    ] = None,
) -> None:
    """Test a runbook against fixtures: ✓/✗ per check (assumptions, steps, KPIs, status,
    expected result), then PASS or FAIL (exit 0 / 1)."""
    settings = cli_settings()
    out = console()
    outcomes: list[TestOutcome] = []
    pack_dir = _pack_or_fail(target, fixture)
    hint = f"rb test {target} --update-baselines"
    if pack_dir is not None:
        pack = load_pack(pack_dir)
        runbook_path, runbook = load_checked(str(pack_dir / pack.runbook), settings.runbooks_dir)
        for scenario in pack.scenarios:
            fx = load_fixture(pack_dir / scenario.fixture)
            if scenario.expect is not None:
                fx = fx.model_copy(update={"expect": scenario.expect})
            expected = pack_dir / scenario.expected if scenario.expected else None
            ui = UiOptions(
                (pack_dir / scenario.fixture).parent, pack_dir / "screenshots", update_baselines, hint
            )
            outcomes.append(
                _run_test(scenario.name, runbook_path, runbook, fx, settings, live, expected, out, ui)
            )
    else:
        assert fixture is not None
        runbook_path, runbook = load_checked(target, settings.runbooks_dir)
        ui = UiOptions(fixture.parent, runbook_path.parent / "screenshots", update_baselines, hint)
        outcomes.append(
            _run_test(
                fixture.name, runbook_path, runbook, load_fixture(fixture), settings, live, None, out, ui
            )
        )
    write_reports(target, outcomes, settings, junit=junit, html=html)
    failed = [o for o in outcomes if not o.passed]
    verdict = "[red]FAIL[/red]" if failed else "[green]PASS[/green]"
    out.print(f"{verdict} {len(outcomes) - len(failed)}/{len(outcomes)} scenarios passed")
    raise typer.Exit(1 if failed else 0)
