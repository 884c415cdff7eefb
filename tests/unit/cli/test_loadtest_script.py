"""`rb loadtest generate`: the k6 script's profile, thresholds and parameters, and the binary."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from conftest import Rb

from rb_cli.loadtest_cmd import k6_binary, report_lines
from rb_cli.loadtest_script import DEFAULT_THRESHOLDS, LoadProfile, parse_rate, parse_stages, parse_thresholds
from rb_common.errors import RbError

REPO = Path(__file__).resolve().parents[3]
HELLO = str(REPO / "runbooks" / "rb-000-hello")


def options_of(script: str) -> dict[str, object]:
    found = re.search(r"export const options = (\{.*?\n\});", script, re.S)
    assert found, script
    return json.loads(found.group(1))


def test_the_default_profile_is_the_specs_ramp_and_thresholds(rb: Rb) -> None:
    code, script, err = rb("loadtest", "generate", HELLO)
    assert code == 0, err
    options = options_of(script)
    assert options["stages"] == [
        {"duration": "1m", "target": 10},
        {"duration": "3m", "target": 50},
        {"duration": "1m", "target": 0},
    ]
    # Long polls by default: the request threshold is on the requests that are not long polls.
    assert options["thresholds"] == {
        "http_req_duration{long_poll:false}": ["p(95)<2000"],
        "http_req_failed": ["rate<0.05"],
        "rb_execution_succeeded": ["rate>0.95"],
    }
    # Parameters from the schema's defaults; the key is read from the environment, never written.
    assert '"greeting": "hello"' in script and '"wait_seconds": 1' in script
    assert "__ENV.RB_API_KEY" in script and "rbk_" not in script
    assert "/api/v1/runbooks/${RUNBOOK}/execute" in script and "/api/v1/executions/${id}" in script


def test_constant_vus_a_params_file_and_overridden_thresholds(rb: Rb, tmp_path: Path) -> None:
    params = tmp_path / "p.yaml"
    params.write_text("greeting: load\nwait_seconds: 0\n")
    code, script, err = rb(
        "loadtest", "generate", HELLO, "--vus", "5", "--duration", "20s", "--params", str(params),
        "--threshold", "http_req_duration=p(95)<100", "--threshold", "rb_execution_succeeded=",
    )  # fmt: skip
    assert code == 0, err
    options = options_of(script)
    assert options["vus"] == 5 and options["duration"] == "20s" and "stages" not in options
    assert options["thresholds"] == {
        "http_req_duration{long_poll:false}": ["p(95)<100"],
        "http_req_failed": ["rate<0.05"],
    }
    assert '"greeting": "load"' in script and '"wait_seconds": 0' in script


@pytest.mark.parametrize(
    "args",
    [
        ["--stages", "1m"],
        ["--stages", "1x:10"],
        ["--duration", "soon"],
        ["--vus", "5", "--stages", "1m:5"],
        ["--threshold", "nothing"],
    ],
)
def test_bad_options_are_one_line_and_exit_2(rb: Rb, args: list[str]) -> None:
    code, out, err = rb("loadtest", "generate", HELLO, *args)
    assert code == 2 and out == "", out
    assert err.startswith("error: ") and err.count("\n") == 1, err


def test_profiles() -> None:
    assert parse_stages("30s:5, 1m:0") == [{"duration": "30s", "target": 5}, {"duration": "1m", "target": 0}]
    assert parse_thresholds([]) == DEFAULT_THRESHOLDS
    assert LoadProfile(vus=3).options()["duration"] == "30s"
    with pytest.raises(RbError):
        parse_stages("1m:many")


def test_the_k6_binary_comes_from_the_k6_package() -> None:
    binary = k6_binary()
    assert os.access(binary, os.X_OK)
    version = subprocess.run([binary, "version"], capture_output=True, text=True, timeout=30)
    assert version.returncode == 0 and version.stdout.startswith("k6 v"), version.stdout + version.stderr


def test_the_report_from_k6s_summary() -> None:
    summary = {
        "metrics": {
            "rb_executions_completed": {"count": 90, "rate": 4.5},
            "rb_execution_succeeded": {"passes": 89, "fails": 1, "value": 0.99},
            "rb_trigger_to_completion": {
                "med": 1000.4,
                "p(90)": 1200,
                "p(95)": 1300,
                "p(99)": 1400,
                "max": 1500,
            },
        }
    }
    assert report_lines(summary) == [
        "rb: executions completed: 90 in 20.0 s (270.0 per minute)",
        "rb: executions SUCCEEDED: 89 of 90 triggered",
        "rb: trigger-to-completion: med 1000 ms, p(90) 1200 ms, p(95) 1300 ms, p(99) 1400 ms, max 1500 ms",
    ]


def test_an_open_loop_profile_is_a_constant_arrival_rate_scenario(rb: Rb) -> None:
    code, script, err = rb("loadtest", "generate", HELLO, "--arrival-rate", "50/s", "--duration", "1m")
    assert code == 0, err
    options = options_of(script)
    assert "vus" not in options and "stages" not in options
    assert options["scenarios"] == {
        "arrivals": {
            "executor": "constant-arrival-rate",
            "rate": 50,
            "timeUnit": "1s",
            "duration": "1m",
            "preAllocatedVUs": 250,
            "maxVUs": 2000,
            "gracefulStop": "300s",
        }
    }
    assert "const OPEN_LOOP = true;" in script
    assert "http.expectedStatuses(202, 429)" in script  # a 429 is refused, not failed


def test_arrival_rates() -> None:
    assert parse_rate("5") == (5, "1s") and parse_rate("5/s") == (5, "1s")
    assert parse_rate("2.5") == (150, "1m") and parse_rate("90/m") == (90, "1m")
    for bad in ("0", "-1", "fast", "1.234567/s", "2/h"):
        with pytest.raises(RbError):
            parse_rate(bad)
    capped = LoadProfile(arrival_rate="10/s", vus=40, duration="20s").options()["scenarios"]["arrivals"]
    assert (capped["maxVUs"], capped["preAllocatedVUs"], capped["duration"]) == (40, 40, "20s")
    with pytest.raises(RbError):
        LoadProfile(arrival_rate="10/s", stages="1m:5").options()


def test_the_report_counts_refusals() -> None:
    summary = {
        "metrics": {
            "rb_executions_completed": {"count": 30, "rate": 0.5},
            "rb_executions_accepted": {"count": 30},
            "rb_executions_refused": {"count": 570},
            "dropped_iterations": {"count": 3},
        }
    }
    assert report_lines(summary)[1] == (
        "rb: executions accepted: 30, refused (429): 570, not started by k6 (no free VU): 3"
    )


def test_long_polls_by_default_wait_in_the_api_and_leave_the_request_threshold_to_the_others(rb: Rb) -> None:
    code, script, err = rb(
        "loadtest", "generate", HELLO, "--vus", "5", "--duration", "20s", "--threshold", "http_req_duration=p(95)<100",
    )  # fmt: skip
    assert code == 0, err
    thresholds = options_of(script)["thresholds"]
    assert isinstance(thresholds, dict)
    assert (
        thresholds["http_req_duration{long_poll:false}"] == ["p(95)<100"]
        and "http_req_duration" not in thresholds
    )
    assert "const POLL_WAIT = 10.0;" in script and "?wait=${POLL_WAIT}" in script
    code, script, err = rb("loadtest", "generate", HELLO, "--poll-wait", "3")
    assert code == 0 and "const POLL_WAIT = 3.0;" in script, err
    # --poll-wait 0: plain polls, the spec's threshold on every request.
    code, script, err = rb(
        "loadtest", "generate", HELLO, "--vus", "5", "--duration", "20s", "--poll-wait", "0"
    )
    assert "const POLL_WAIT = 0.0;" in script and "http_req_duration" in options_of(script)["thresholds"]  # type: ignore[operator]
    code, _, err = rb("loadtest", "generate", HELLO, "--poll-wait", "31")
    assert code == 2 and err.count("\n") == 1, err


def test_a_threshold_given_twice_after_the_long_poll_rename_is_refused(rb: Rb) -> None:
    code, out, err = rb(
        "loadtest", "generate", HELLO, "--poll-wait", "5", "--threshold", "http_req_duration=p(95)<100",
        "--threshold", "http_req_duration{long_poll:false}=p(95)<200",
    )  # fmt: skip
    assert code == 2 and out == "" and "given twice" in err and err.count("\n") == 1, err
