"""`rb`: validate, run, test and replay runbooks."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from rb_cli.output import Progress, check_line
from rb_cli.resolve import resolve_runbook
from rb_cli.sources import executions_of, load_events
from rb_cli.stack import auth_headers, cli_settings
from rb_common.audit import audit_record, verify_chain
from rb_common.canonical import canonical_json
from rb_common.errors import RbError
from rb_common.loader import referenced_files
from rb_common.params import coerce_cli_value
from rb_common.secrets import renamed_notices, secrets_from_env
from rb_common.settings import Settings
from rb_common.validator import validate_file
from rb_engine.engine import run_local
from rb_engine.export import export_fixture
from rb_engine.fixtures import Fixture, load_fixture
from rb_engine.replay import Replayer
from rb_engine.reports.write import write_reports
from rb_engine.result import canonical_result_json
from rb_engine.runner import PluginExecutor
from rb_engine.steps.registry import default_registry
from rb_engine.testing import (
    TestOutcome,
    check_execution,
    load_expected,
    load_pack,
)
from rb_engine.ui_testing import UiOptions, fixture_environment, screenshots_of
from rb_store import artifacts as _pg_backend  # noqa: F401 (registers RB_ARTIFACTS_BACKEND=postgres)

app = typer.Typer(
    name="rb",
    help="Runbooks as code: validate, test, run and replay YAML runbooks.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

F = TypeVar("F", bound=Callable[..., Any])


def _console() -> Console:
    return Console(highlight=False, soft_wrap=True)


def _err() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def user_errors(func: F) -> F:
    """Bad input is a message and exit code 2, never a traceback."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except RbError as exc:
            _err().print(f"[red]error:[/red] {escape(str(exc))}")
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def _params(pairs: list[str], option: str = "--param") -> dict[str, Any]:
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise RbError(f"{option} takes key=value, got {pair!r}")
        params[key] = coerce_cli_value(value)
    return params


@app.command()
@user_errors
def validate(paths: Annotated[list[Path], typer.Argument(help="runbook files or directories")]) -> None:
    """Check runbooks: exit 0 when all are valid, 1 otherwise."""
    console = _console()
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(
                p
                for p in path.rglob("*.y*ml")
                if p.name not in {"acceptance.yml"} and "fixtures" not in p.parts
            )
        elif path.exists():
            files.append(path)
        else:
            raise RbError(f"{path}: no such file or directory")
    failed = 0
    for file in files:
        runbook, issues = validate_file(file)
        errors = [i for i in issues if i.level == "error"]
        for issue in issues:
            colour = "red" if issue.level == "error" else "yellow"
            console.print(f"[{colour}]{escape(str(issue))}[/{colour}]")
        if errors:
            failed += 1
        else:
            console.print(
                f"[green]✓[/green] {escape(str(file))}" + (f" ({escape(runbook.id)})" if runbook else "")
            )
    console.print(f"{len(files) - failed} valid, {failed} invalid")
    raise typer.Exit(1 if failed else 0)


def _load_checked(ref: str, settings: Settings) -> tuple[Path, Any]:
    path = resolve_runbook(ref, settings.runbooks_dir)
    runbook, issues = validate_file(path)
    errors = [i for i in issues if i.level == "error"]
    if errors or runbook is None:
        raise RbError("invalid runbook:\n" + "\n".join(str(i) for i in errors))
    return path, runbook


@app.command()
@user_errors
def run(
    runbook: Annotated[str, typer.Argument(help="runbook file, directory or id")],
    param: Annotated[list[str], typer.Option("--param", "-p", help="key=value")] = [],  # noqa: B006
    params_file: Annotated[Path | None, typer.Option(help="JSON or YAML file of params")] = None,
    fixture: Annotated[Path | None, typer.Option(help="stub external steps from a fixture")] = None,
    fact: Annotated[list[str], typer.Option("--fact", "-f", help="assumption fact name=value")] = [],  # noqa: B006
) -> None:
    """Run a runbook in this process and print its progress; exit 0 if it succeeds."""
    settings = cli_settings()
    path, model = _load_checked(runbook, settings)
    params: dict[str, Any] = {}
    if params_file is not None:
        params.update(_read_mapping(params_file))
    params.update(_params(param))
    fx = load_fixture(fixture) if fixture else None
    console = _console()
    state = asyncio.run(
        run_local(
            model,
            settings,
            base_dir=path.parent,
            params=params,
            facts=_params(fact, "--fact"),
            fixture=fx,
            on_event=Progress(console),
        )
    )
    console.print(f"execution id: {state.execution_id}")
    raise typer.Exit(0 if state.status == "SUCCEEDED" else 1)


def _read_mapping(path: Path) -> dict[str, Any]:
    import json

    import yaml

    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except OSError as exc:
        raise RbError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except (ValueError, yaml.YAMLError) as exc:
        raise RbError(f"{path}: not valid JSON/YAML: {exc}") from None
    if not isinstance(data, dict):
        raise RbError(f"{path}: expected a mapping of parameter names to values")
    return data


def _run_test(
    name: str,
    runbook_path: Path,
    runbook: Any,
    fixture: Fixture,
    settings: Settings,
    live: bool,
    expected_path: Path | None,
    console: Console,
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
    console.print(f"[bold]{escape(name)}[/bold] [dim]execution {state.execution_id}[/dim]")
    for shot in outcome.screenshots:
        check_line(console, shot.ok, shot.summary, shot.step_id)
    for check in outcome.checks:
        check_line(console, check.ok, check.label, check.detail)
    return outcome


@app.command()
@user_errors
def test(
    target: Annotated[str, typer.Argument(help="runbook (with --fixture) or acceptance pack dir")],
    fixture: Annotated[Path | None, typer.Option(help="fixture file (JSON or YAML)")] = None,
    live: Annotated[bool, typer.Option(help="run external steps that have no stub for real")] = False,
    update_baselines: Annotated[
        bool, typer.Option(help="write ui_screenshot baselines (screenshots/<step>.png) instead of comparing")
    ] = False,
    junit: Annotated[Path | None, typer.Option(help="write a JUnit XML report here")] = None,
    html: Annotated[Path | None, typer.Option(help="write a self-contained HTML report here")] = None,
) -> None:
    """Test a runbook against fixtures: ✓/✗ per check, then PASS or FAIL (exit 0 / 1)."""
    settings = cli_settings()
    console = _console()
    outcomes: list[TestOutcome] = []
    target_path = Path(target)
    hint = f"rb test {target} --update-baselines"
    if fixture is None and target_path.is_dir() and (target_path / "acceptance.yml").is_file():
        pack = load_pack(target_path)
        runbook_path, runbook = _load_checked(str(target_path / pack.runbook), settings)
        for scenario in pack.scenarios:
            fx = load_fixture(target_path / scenario.fixture)
            if scenario.expect is not None:
                fx = fx.model_copy(update={"expect": scenario.expect})
            expected = target_path / scenario.expected if scenario.expected else None
            ui = UiOptions((target_path / scenario.fixture).parent, target_path / "screenshots", update_baselines, hint)
            outcomes.append(
                _run_test(scenario.name, runbook_path, runbook, fx, settings, live, expected, console, ui)
            )
    else:
        if fixture is None:
            raise RbError(f"{target}: give --fixture F, or a directory with an acceptance.yml")
        runbook_path, runbook = _load_checked(target, settings)
        ui = UiOptions(fixture.parent, runbook_path.parent / "screenshots", update_baselines, hint)
        outcomes.append(
            _run_test(
                fixture.name, runbook_path, runbook, load_fixture(fixture), settings, live, None, console, ui
            )
        )
    write_reports(target, outcomes, settings, junit=junit, html=html)
    failed = [o for o in outcomes if not o.passed]
    verdict = "[red]FAIL[/red]" if failed else "[green]PASS[/green]"
    console.print(f"{verdict} {len(outcomes) - len(failed)}/{len(outcomes)} scenarios passed")
    raise typer.Exit(1 if failed else 0)


@app.command()
@user_errors
def replay(
    execution_id: Annotated[str | None, typer.Argument(help="execution id (or a unique prefix)")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="print the canonical result")] = False,
    against: Annotated[Path | None, typer.Option(help="what-if: replay against this runbook file")] = None,
    all_runs: Annotated[bool, typer.Option("--all", help="every recorded run of --runbook")] = False,
    runbook: Annotated[str | None, typer.Option("--runbook", help="runbook id, with --all")] = None,
    source: Annotated[str, typer.Option(help="auto | local | nats | db")] = "auto",
    live: Annotated[bool, typer.Option(help="re-run external steps for real and diff their results")] = False,
) -> None:
    """Re-run an execution from its recorded events and compare, step by step (exit 0 / 1)."""
    settings = cli_settings()
    new_definition = None
    if against is not None:
        _, new_definition = _load_checked(str(against), settings)
        new_files = referenced_files(new_definition, against.parent)
    if all_runs:
        if not runbook:
            raise RbError("--all needs --runbook ID")
        ids = executions_of(settings, runbook)
        if not ids:
            raise RbError(f"no recorded executions of {runbook!r} (local log or recorder database)")
    elif execution_id:
        ids = [execution_id]
    else:
        raise RbError("give an EXECUTION_ID, or --all --runbook ID")
    secrets = secrets_from_env(os.environ)
    replayer = Replayer(PluginExecutor(default_registry()), settings, live=live, secrets=secrets)
    console = _console()
    failed = 0
    for ref in ids:
        events, where = load_events(ref, settings, source)
        if new_definition is not None:
            requested = events[0]
            data = {**requested.data, "runbook": new_definition.snapshot(), "files": new_files}
            events = [requested.model_copy(update={"data": data}), *events[1:]]
        try:
            report = asyncio.run(replayer.replay(events))
        except ValueError as exc:
            raise RbError(f"execution {ref}: {exc}") from None
        failed += not report.verified
        if json_output:
            sys.stdout.write(canonical_result_json(report.state))
            continue
        _print_replay(console, report, len(events), where, against)
    raise typer.Exit(1 if failed else 0)


def _print_replay(console: Console, report: Any, count: int, where: str, against: Path | None) -> None:
    what = f" against {against}" if against else ""
    console.print(f"replaying execution {report.execution_id}{what} ({count} events from {where})")
    by_step: dict[str | None, list[str]] = {}
    for deviation in report.deviations:
        by_step.setdefault(deviation.step, []).append(str(deviation))
    for sid in report.steps_checked:
        status = report.state.steps[sid].status.lower()
        check_line(console, sid not in by_step, f"{sid} ({status})")
        for fine, note in report.notes.get(sid, []):
            check_line(console, fine, f"  {note}")
        for line in by_step.get(sid, []):
            console.print(f"      [red]{escape(line)}[/red]")
    for line in by_step.get(None, []):
        console.print(f"  [red]✗ {escape(line)}[/red]")
    if report.verified:
        console.print("[green]REPLAY VERIFIED[/green]")
    else:
        console.print(
            f"[red]REPLAY DEVIATES[/red]: {len(report.deviations)} deviation(s) in "
            f"{', '.join(sorted(s or 'execution' for s in by_step))}"
        )


audit_app = typer.Typer(help="Tamper evidence for recorded executions.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")


@audit_app.command("verify")
@user_errors
def audit_verify(
    execution_id: Annotated[str, typer.Argument()],
    source: Annotated[str, typer.Option(help="auto | local | nats | db")] = "auto",
    json_output: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Check the hash chain: exit 0 intact, 1 naming each edited, removed, inserted or moved event."""
    settings = cli_settings()
    events, where = load_events(execution_id, settings, source)
    problems = verify_chain(events)
    if json_output:
        record = {
            **audit_record(events),
            "source": where,
            "intact": not problems,
            "problems": [{"seq": p.seq, "event_id": p.event_id, "problem": p.problem} for p in problems],
        }
        sys.stdout.write(json.dumps(record, indent=2, default=str) + "\n")
        raise typer.Exit(1 if problems else 0)
    console = _console()
    record = audit_record(events)
    console.print(f"execution {record['execution_id']} ({len(events)} events from {where})")
    console.print(
        f"  runbook {record['runbook_id']} {record['runbook_version']}, actor {record['actor']}, "
        f"legal basis: {record['legal_basis']}"
    )
    for problem in problems:
        console.print(f"  [red]✗ {escape(str(problem))}[/red]")
    if problems:
        console.print(f"[red]AUDIT FAILED[/red]: {len(problems)} problem(s)")
        raise typer.Exit(1)
    console.print(f"[green]AUDIT OK[/green]: hash chain intact, head {record['head_hash']}")


fixture_app = typer.Typer(help="Fixtures for rb test.", no_args_is_help=True)
app.add_typer(fixture_app, name="fixture")


@fixture_app.command("export")
@user_errors
def fixture_export(
    execution_id: Annotated[str, typer.Argument()],
    out: Annotated[Path, typer.Option(help="directory for fixture.yaml and expected.json")] = Path("."),
    source: Annotated[str, typer.Option(help="auto | local | nats | db")] = "auto",
) -> None:
    """Write a fixture (stubs from recorded results, params, facts) and the expected result."""
    import yaml

    settings = cli_settings()
    events, _ = load_events(execution_id, settings, source)
    fixture, expected = export_fixture(events)
    out.mkdir(parents=True, exist_ok=True)
    name = events[0].execution_id[:12]
    fixture_path, expected_path = out / f"{name}.yaml", out / f"{name}.json"
    fixture_path.write_text(yaml.safe_dump(fixture, sort_keys=False, allow_unicode=True), encoding="utf-8")
    expected_path.write_text(canonical_json(expected, indent=2) + "\n", encoding="utf-8")
    _console().print(f"wrote {fixture_path} and {expected_path}")


def main() -> None:
    for notice in renamed_notices(os.environ):  # every command, `rb serve` included
        print(f"rb: {notice}", file=sys.stderr, flush=True)
    app()


@app.command("serve")
@user_errors
def serve_command(
    service: Annotated[str, typer.Argument(help="api | executor | worker | recorder | scheduler | notifier")],
) -> None:
    """Run one service in the foreground (for docker-compose, Kubernetes, or by hand)."""
    from rb_cli.services import serve

    serve(service, Settings())  # the environment only: `rb up` passes its stack down


@app.command()
@user_errors
def up(
    load: Annotated[
        bool, typer.Option(help="register and approve the runbooks under RB_RUNBOOKS_DIR")
    ] = True,
) -> None:
    """The whole stack on this machine: NATS (started if none answers), recorder, executor, API."""
    from rb_cli.services import up as run_up

    run_up(Settings(), load_runbooks=load)  # the environment only: no earlier stack's file


def _api(settings: Settings) -> str:
    return (settings.api_url or f"http://{settings.api_addr}").rstrip("/")


def _call(method: str, url: str, settings: Settings, **kwargs: Any) -> Any:
    """One API request with the CLI's credentials (rb_cli.stack.auth_headers)."""
    import httpx

    headers = {**auth_headers(settings), **kwargs.pop("headers", {})}
    try:
        response = httpx.request(method, url, timeout=30, headers=headers, **kwargs)
    except httpx.HTTPError as exc:
        raise RbError(f"cannot reach the API at {url}: {exc}") from None
    if response.status_code >= 400:
        try:
            problem = response.json()
            detail = problem.get("detail") or problem.get("title")
            errors = problem.get("errors")
        except ValueError:
            detail, errors = response.text[:300], None
        extra = "".join(f"\n  {e}" for e in errors or [])
        if response.status_code == 401:
            extra += "\n  (set RB_API_KEY, or run `rb up`, which writes RB_HOME/admin.key)"
        raise RbError(f"{response.status_code}: {detail}{extra}")
    if response.status_code == 204 or not response.content:
        return {}
    return response.json()


@app.command()
@user_errors
def trigger(
    runbook_id: Annotated[str | None, typer.Argument(help="runbook id registered in the API")] = None,
    param: Annotated[list[str], typer.Option("--param", "-p", help="key=value")] = [],  # noqa: B006
    fact: Annotated[list[str], typer.Option("--fact", "-f", help="assumption fact name=value")] = [],  # noqa: B006
    idempotency_key: Annotated[
        str | None, typer.Option(help="the same key never starts a second run")
    ] = None,
    event: Annotated[
        Path | None, typer.Option(help="publish this alert event (JSON/YAML) to NATS for routing")
    ] = None,
) -> None:
    """Execute a registered runbook through the API, or publish a raw alert event with --event."""
    settings = cli_settings()
    if event is not None:
        _publish_event(event, settings)
        return
    if not runbook_id:
        raise RbError("give a RUNBOOK_ID, or --event FILE")
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    body = {"params": _params(param), "assumptions": _params(fact, "--fact")}
    result = _call(
        "POST", f"{_api(settings)}/api/v1/runbooks/{runbook_id}/execute", settings, json=body, headers=headers
    )
    _console().print(f"execution id: {result['execution_id']} ({result['status']})")


def _publish_event(path: Path, settings: Settings) -> None:
    """An AlertEvent from a file onto rb.alert.<source>: the scheduler's router matches it to
    approved runbooks exactly as alerts posted to the API."""
    import uuid
    from datetime import UTC, datetime

    from pydantic import ValidationError

    from rb_common.bus import connect
    from rb_common.messages import AlertEvent
    from rb_common.registry_events import last_seq

    data = _read_mapping(path)
    data.setdefault("dedupe_id", uuid.uuid4().hex)
    data.setdefault("received_at", datetime.now(UTC).isoformat())
    try:
        alert = AlertEvent.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise RbError(f"{path}: {'.'.join(map(str, err['loc'])) or '(document)'}: {err['msg']}") from None

    async def publish() -> bool:
        bus = await connect(settings.nats_url, namespace=settings.namespace, name="rb-cli", connect_timeout=3)
        try:
            event = alert
            if event.registry_seq is None:
                # Matched against the registry as of now, as alerts posted to the API are.
                event = alert.model_copy(update={"registry_seq": await last_seq(bus)})
            ack = await bus.js.publish(
                bus.names.alert_subject(alert.source),
                event.encode(),
                headers={"Nats-Msg-Id": f"{alert.source}:{alert.dedupe_id}"},
                stream=bus.names.triggers_stream,
            )
            return bool(ack.duplicate)
        finally:
            await bus.close()

    try:
        duplicate = asyncio.run(publish())
    except OSError as exc:
        raise RbError(f"cannot reach NATS at {settings.nats_url}: {exc}") from None
    state = "duplicate (already published)" if duplicate else "published"
    _console().print(f"alert {alert.source}:{alert.dedupe_id} {state}")


@app.command()
@user_errors
def executions(
    runbook_id: Annotated[str | None, typer.Option("--runbook", help="only this runbook")] = None,
    status: Annotated[str | None, typer.Option(help="only this status")] = None,
    limit: Annotated[int, typer.Option(help="how many")] = 20,
    json_output: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Recent executions, newest first, from the API."""
    settings = cli_settings()
    query = {k: v for k, v in {"runbook_id": runbook_id, "status": status, "limit": limit}.items() if v}
    result = _call("GET", f"{_api(settings)}/api/v1/executions", settings, params=query)
    if json_output:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
        return
    console = _console()
    for item in result.get("items", []):
        console.print(
            f"{item['id']}  {item['runbook_id']:<32} {item['status']:<16} {item.get('started_at') or '-'}"
        )
    console.print(f"{len(result.get('items', []))} of {result.get('total', 0)}")


@app.command()
@user_errors
def alerts(
    source: Annotated[str | None, typer.Option(help="only this source (alertmanager, grafana, ...)")] = None,
    status: Annotated[str | None, typer.Option(help="firing or resolved")] = None,
    matched: Annotated[
        bool | None, typer.Option("--matched/--unmatched", help="only alerts that started runbooks / none")
    ] = None,
    limit: Annotated[int, typer.Option(help="how many")] = 20,
    offset: Annotated[int, typer.Option(help="skip this many")] = 0,
    json_output: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Recent alerts as the trigger router handled them, newest first: the executions each
    started, or why it started nothing."""
    settings = cli_settings()
    query: dict[str, Any] = {"limit": limit, "offset": offset}
    query.update({k: v for k, v in {"source": source, "status": status}.items() if v})
    if matched is not None:
        query["matched"] = "true" if matched else "false"
    result = _call("GET", f"{_api(settings)}/api/v1/alerts", settings, params=query)
    if json_output:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
        return
    console = _console()
    for item in result.get("items", []):
        if item.get("matched"):
            outcome = "-> " + ", ".join(
                f"{m.get('runbook_id')} {m.get('execution_id')}"
                for m in item.get("matches", [])
                if not m.get("refused")
            )
        else:
            outcome = f"unmatched: {item.get('reason') or '-'}"
        console.print(
            f"{item.get('received_at') or '-'}  {item['source']:<12} {item['status']:<8} "
            f"{escape(str(item.get('summary') or item.get('name') or item['dedupe_id']))[:60]}  {escape(outcome)}"
        )
    console.print(f"{len(result.get('items', []))} of {result.get('total', 0)}")


@app.command()
@user_errors
def logs(
    execution_id: Annotated[str, typer.Argument()],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="stream events until the run ends")] = False,
) -> None:
    """The events of an execution from the API; --follow streams them live (SSE)."""
    import httpx

    settings = cli_settings()
    console = _console()
    url = f"{_api(settings)}/api/v1/executions/{execution_id}"
    if not follow:
        for event in _call("GET", f"{url}/events", settings)["items"]:
            _print_event(console, event)
        return
    try:
        with httpx.stream(
            "GET", f"{url}/stream", headers=auth_headers(settings), timeout=httpx.Timeout(10, read=None)
        ) as response:
            if response.status_code >= 400:
                raise RbError(f"{response.status_code}: {response.read().decode()[:300]}")
            for line in response.iter_lines():
                if line.startswith("data:"):
                    _print_event(console, json.loads(line[5:]))
    except httpx.HTTPError as exc:
        raise RbError(f"cannot reach the API at {url}: {exc}") from None


def _print_event(console: Console, event: dict[str, Any]) -> None:
    data = event.get("data") or {}
    what = data.get("step_id") or data.get("name") or data.get("reason") or ""
    extra = f" attempt {data['attempt']}" if data.get("attempt", 1) > 1 else ""
    error = f": {data['error']}" if data.get("error") else ""
    console.print(
        f"{event.get('seq', ''):>4} {event.get('time', '')} {event.get('type', ''):<24} "
        f"{escape(str(what))}{extra}{escape(error)}"
    )


keys_app = typer.Typer(
    help="API keys (needs an admin key: RB_API_KEY or RB_HOME/admin.key).", no_args_is_help=True
)
app.add_typer(keys_app, name="keys")

_DAYS = 86_400


def _expires_in(value: str) -> int:
    """Seconds: a number, or 30m / 12h / 90d."""
    from rb_common.durations import parse_duration

    text = value.strip().lower()
    try:
        seconds = float(text[:-1]) * _DAYS if text.endswith("d") else parse_duration(text)
    except ValueError:
        raise RbError(f"--expires-in {value!r}: use seconds or e.g. 30m, 12h, 90d") from None
    return int(seconds)


@keys_app.command("create")
@user_errors
def keys_create(
    name: Annotated[str, typer.Argument(help="who holds the key (recorded as key:<name>)")],
    role: Annotated[
        list[str], typer.Option("--role", "-r", help="viewer, operator, approver, author, admin (repeat)")
    ],
    team: Annotated[list[str], typer.Option("--team", "-t", help="a team the key belongs to (repeat)")] = [],  # noqa: B006
    expires_in: Annotated[str | None, typer.Option(help="e.g. 3600, 12h, 90d (default: never)")] = None,
    json_output: Annotated[bool, typer.Option("--json")] = False,
    slack_user: Annotated[
        str | None,
        typer.Option(metavar="U…", help="Slack user id whose Approve/Reject clicks act as this key"),
    ] = None,
) -> None:
    """Create an API key; it is printed this once and never shown again."""
    settings = cli_settings()
    body: dict[str, Any] = {"name": name, "roles": role, "teams": team}
    if slack_user is not None:
        body["slack_user_id"] = slack_user
    if expires_in is not None:
        body["expires_in"] = _expires_in(expires_in)
    result = _call("POST", f"{_api(settings)}/api/v1/keys", settings, json=body)
    if json_output:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
        return
    _err().print(f"key {result['id']} for {result['name']} ({', '.join(result['roles'])}); shown only now:")
    sys.stdout.write(result["key"] + "\n")


@keys_app.command("list")
@user_errors
def keys_list(
    all_keys: Annotated[bool, typer.Option("--all", help="revoked and expired keys too")] = False,
    json_output: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """API keys: id, name, roles, teams, state (never the keys themselves)."""
    settings = cli_settings()
    items = _call("GET", f"{_api(settings)}/api/v1/keys", settings)["items"]
    if not all_keys:
        items = [k for k in items if k.get("active")]
    if json_output:
        sys.stdout.write(json.dumps({"items": items}, indent=2) + "\n")
        return
    console = _console()
    for k in items:
        state = "active" if k.get("active") else ("revoked" if k.get("revoked_at") else "expired")
        console.print(
            f"{k['id']}  {escape(k['name']):<20} {','.join(k['roles']):<24} "
            f"{escape(','.join(k['teams']) or '-'):<16} {state:<8} expires {k.get('expires_at') or 'never'}"
        )
    console.print(f"{len(items)} keys")


@keys_app.command("revoke")
@user_errors
def keys_revoke(key_id: Annotated[str, typer.Argument(help="the key's id (rb keys list)")]) -> None:
    """Revoke an API key: it answers 401 from then on."""
    settings = cli_settings()
    result = _call("DELETE", f"{_api(settings)}/api/v1/keys/{key_id}", settings)
    _console().print(f"revoked {result['id']} ({escape(result['name'])})")


from rb_cli.secrets_cmd import secrets_app  # noqa: E402

app.add_typer(secrets_app, name="secrets")

import rb_cli.approvals_cmd  # noqa: E402,F401  (rb approvals, rb approve, rb reject)
