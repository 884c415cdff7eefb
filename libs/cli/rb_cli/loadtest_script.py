"""The k6 script `rb loadtest` writes for a runbook: each iteration triggers the runbook through the
API, polls `GET /api/v1/executions/{id}` until a terminal status (k6 has no SSE client), and
checks both the HTTP answers and the execution's success. By default each poll is a long poll
(`?wait=S`, `--poll-wait S`, 10 s: the API answers when the execution ends, or after S seconds), so
following an execution costs one or two requests instead of one per poll interval, and its end
is seen when it happens rather than up to an interval later; those requests last as long as the
execution, so `http_req_duration`'s threshold is then applied to the other requests
(`http_req_duration{long_poll:false}`). `--poll-wait 0`: plain polls every `--poll-interval`.

The API key is never written into the script: k6 reads it from RB_API_KEY at run time.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from rb_common.errors import RbError

# The engine spec's load profile: ramp for a minute to 10 users, 3 minutes towards 50, ramp down.
DEFAULT_STAGES = "1m:10,3m:50,1m:0"
# The spec's thresholds, plus the executions' own success (as strict as http_req_failed).
DEFAULT_THRESHOLDS: dict[str, str] = {
    "http_req_duration": "p(95)<2000",
    "http_req_failed": "rate<0.05",
    "rb_execution_succeeded": "rate>0.95",
}
# Long polls by default: a client following an execution waits in the API for its end (one or two
# requests an execution) instead of polling every 0.25 s, which at 50 VUs cost the API 5x the CPU
# and the machine about a fifth of its completions a minute (bench/loadtest.md, session 10).
DEFAULT_POLL_WAIT = 10.0
# Custom metrics the script records (and `rb loadtest run` reads back from k6's summary).
COMPLETION = "rb_trigger_to_completion"
COMPLETED = "rb_executions_completed"
SUCCEEDED = "rb_execution_succeeded"
EXECUTE = "rb_execute_duration"
ACCEPTED = "rb_executions_accepted"
REFUSED = "rb_executions_refused"  # 429: the API would not take the work (not a failure)

_DURATION = re.compile(r"^\d+(\.\d+)?(ms|s|m|h)$")
_RATE = re.compile(r"^(\d+(?:\.\d+)?)\s*(?:/\s*(s|m))?$")
# Open loop: VUs k6 keeps ready for the arrivals (each follows its execution to the end).
MAX_VUS_CAP = 2000


def parse_rate(text: str) -> tuple[int, str]:
    """`--arrival-rate` `R`, `R/s` or `R/m` → k6's (rate, timeUnit): iterations started per unit."""
    found = _RATE.match(text.strip())
    value = float(found.group(1)) if found else 0.0
    if not found or value <= 0:
        raise RbError(f"--arrival-rate {text!r}: use executions per second or minute, e.g. 50/s, 300/m, 2.5")
    per_second = found.group(2) in (None, "s")
    if per_second and value.is_integer():
        return int(value), "1s"
    per_minute = value * 60 if per_second else value
    if not float(per_minute).is_integer():
        raise RbError(f"--arrival-rate {text!r}: give it per minute as a whole number (e.g. 150/m)")
    return int(per_minute), "1m"


@dataclass(frozen=True)
class LoadProfile:
    """What the script runs: constant `vus` for `duration`, or `stages` (duration:target, ...)."""

    vus: int | None = None
    duration: str | None = None
    stages: str | None = None
    # Open loop (k6 constant-arrival-rate): executions started per time unit whatever the API's
    # pace; `vus` then caps the VUs following them (default: enough for a minute of arrivals).
    arrival_rate: str | None = None
    thresholds: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_THRESHOLDS))
    poll_interval: float = 0.25
    poll_timeout: float = 300.0
    poll_wait: float = DEFAULT_POLL_WAIT  # seconds each poll may wait for the end (0: plain polls)

    @property
    def open_loop(self) -> bool:
        return self.arrival_rate is not None

    def options(self) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if self.arrival_rate is not None:
            if self.stages is not None:
                raise RbError("give --arrival-rate or --stages, not both")
            rate, unit = parse_rate(self.arrival_rate)
            per_second = rate if unit == "1s" else rate / 60
            max_vus = self.vus or min(MAX_VUS_CAP, max(10, int(per_second * 60)))
            options["scenarios"] = {
                "arrivals": {
                    "executor": "constant-arrival-rate",
                    "rate": rate,
                    "timeUnit": unit,
                    "duration": _duration(self.duration or "1m", "--duration"),
                    "preAllocatedVUs": min(max_vus, max(5, int(per_second * 5))),
                    "maxVUs": max_vus,
                    "gracefulStop": f"{int(self.poll_timeout)}s",
                }
            }
        elif self.vus is not None or self.duration is not None:
            if self.stages is not None:
                raise RbError("give --vus/--duration or --stages, not both")
            options["vus"] = self.vus if self.vus is not None else 1
            options["duration"] = _duration(self.duration or "30s", "--duration")
        else:
            options["stages"] = parse_stages(self.stages or DEFAULT_STAGES)
        thresholds: dict[str, list[str]] = {}
        for metric, expr in self.thresholds.items():
            if not expr:
                continue
            key = self._threshold_metric(metric)
            if key in thresholds:
                raise RbError(
                    f"--threshold {key}: given twice (with --poll-wait, http_req_duration is {key})"
                )
            thresholds[key] = [expr]
        options["thresholds"] = thresholds
        options["summaryTrendStats"] = ["avg", "min", "med", "max", "p(90)", "p(95)", "p(99)"]
        return options

    def _threshold_metric(self, metric: str) -> str:
        # A long poll lasts as long as its execution: not what a request duration threshold means.
        if self.poll_wait > 0 and metric == "http_req_duration":
            return "http_req_duration{long_poll:false}"
        return metric


def _duration(text: str, option: str) -> str:
    value = text.strip()
    if not _DURATION.match(value):
        raise RbError(f"{option} {text!r}: use a k6 duration such as 30s, 1m, 1.5h, 500ms")
    return value


def parse_stages(text: str) -> list[dict[str, Any]]:
    """`1m:10,3m:50,1m:0` → k6 stages (each ramps linearly to its target over its duration)."""
    stages: list[dict[str, Any]] = []
    for part in text.split(","):
        duration, sep, target = part.strip().partition(":")
        if not sep or not target.strip().isdigit():
            raise RbError(f"--stages {text!r}: use DURATION:VUS[,DURATION:VUS...], e.g. 1m:10,3m:50,1m:0")
        stages.append({"duration": _duration(duration, "--stages"), "target": int(target)})
    return stages


def parse_thresholds(pairs: list[str]) -> dict[str, str]:
    """The default thresholds with `METRIC=EXPR` overrides; `METRIC=` drops one."""
    thresholds = dict(DEFAULT_THRESHOLDS)
    for pair in pairs:
        metric, sep, expr = pair.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][\w{}:,.=\- ]*", metric.strip()):
            raise RbError(f"--threshold takes METRIC=EXPR (e.g. 'http_req_duration=p(95)<100'), got {pair!r}")
        thresholds[metric.strip()] = expr.strip()
    return thresholds


def schema_defaults(parameters: dict[str, Any] | None) -> dict[str, Any]:
    """The defaults of a runbook's `parameters` schema (top-level properties)."""
    properties = (parameters or {}).get("properties") or {}
    return {
        name: spec["default"]
        for name, spec in properties.items()
        if isinstance(spec, dict) and "default" in spec
    }


def render(runbook_id: str, params: dict[str, Any], api_url: str, profile: LoadProfile) -> str:
    """The k6 script (JavaScript) for one runbook."""
    return _TEMPLATE.format(
        runbook=json.dumps(runbook_id),
        params=json.dumps(params, indent=2, sort_keys=True),
        api_url=json.dumps(api_url.rstrip("/")),
        options=json.dumps(profile.options(), indent=2),
        poll_interval=json.dumps(profile.poll_interval),
        poll_timeout=json.dumps(profile.poll_timeout),
        poll_wait=json.dumps(profile.poll_wait),
        open_loop=json.dumps(profile.open_loop),
        accepted=ACCEPTED,
        refused=REFUSED,
        completion=COMPLETION,
        completed=COMPLETED,
        succeeded=SUCCEEDED,
        execute=EXECUTE,
    )


_TEMPLATE = """\
// k6 load test for runbook {runbook}, written by `rb loadtest generate`.
// Run: RB_API_KEY=<operator key> k6 run load-test.js   (RB_API_URL overrides the API's address)
import http from 'k6/http';
import {{ check, sleep }} from 'k6';
import {{ Counter, Rate, Trend }} from 'k6/metrics';

const BASE = (__ENV.RB_API_URL || {api_url}).replace(/\\/+$/, '');
const KEY = __ENV.RB_API_KEY || '';
const RUNBOOK = {runbook};
const PARAMS = {params};
const POLL_INTERVAL = {poll_interval}; // seconds between GET /executions/{{id}}
const POLL_TIMEOUT = {poll_timeout}; // seconds before an execution counts as not finished
const POLL_WAIT = {poll_wait}; // seconds a poll may wait for the end (?wait=, a long poll); 0: none
const TERMINAL = ['SUCCEEDED', 'FAILED', 'ABORTED', 'CANCELLED'];
// Open loop (constant-arrival-rate): an iteration that is refused ends; closed loop: it waits
// the answer's Retry-After (at most 5 s) before the VU triggers again.
const OPEN_LOOP = {open_loop};

const completion = new Trend('{completion}', true);
const completed = new Counter('{completed}');
const succeeded = new Rate('{succeeded}');
const execute = new Trend('{execute}', true);
const accepted = new Counter('{accepted}');
const refused = new Counter('{refused}');

export const options = {options};

const headers = {{ Authorization: `Bearer ${{KEY}}`, 'Content-Type': 'application/json' }};
const pollUrl = (id) => `${{BASE}}/api/v1/executions/${{id}}` + (POLL_WAIT > 0 ? `?wait=${{POLL_WAIT}}` : '');
// Until the recorder has projected a new execution, reading it answers 404: expected, not a failure.
const pollAnswers = http.expectedStatuses(200, 404);
// 429 (with Retry-After): the API refused work it could not do. Counted as refused, not failed.
const executeAnswers = http.expectedStatuses(202, 429);

export function setup() {{
  if (!KEY) throw new Error('set RB_API_KEY to an API key with the operator role');
  const res = http.get(`${{BASE}}/api/v1/runbooks/${{RUNBOOK}}`, {{
    headers,
    tags: {{ name: 'runbook', long_poll: 'false' }},
  }});
  if (res.status !== 200) throw new Error(`GET /api/v1/runbooks/${{RUNBOOK}} answered ${{res.status}}: ${{res.body}}`);
}}

export default function () {{
  const started = Date.now();
  const res = http.post(
    `${{BASE}}/api/v1/runbooks/${{RUNBOOK}}/execute`,
    JSON.stringify({{ params: PARAMS }}),
    {{ headers, tags: {{ name: 'execute', long_poll: 'false' }}, responseCallback: executeAnswers }},
  );
  execute.add(res.timings.duration);
  if (res.status === 429) {{
    refused.add(1);
    if (!OPEN_LOOP) sleep(Math.min(5, Number(res.headers['Retry-After']) || 1));
    return;
  }}
  if (!check(res, {{ 'execute answered 202': (r) => r.status === 202 }})) return;
  accepted.add(1);
  const id = res.json('execution_id');
  let status = res.json('status');
  let pause = POLL_WAIT <= 0; // a long poll goes at once; a plain one after the interval
  while (!TERMINAL.includes(status) && Date.now() - started < POLL_TIMEOUT * 1000) {{
    if (pause) sleep(POLL_INTERVAL);
    const r = http.get(pollUrl(id), {{
      headers,
      tags: {{ name: 'execution', long_poll: String(POLL_WAIT > 0) }},
      responseCallback: pollAnswers,
      timeout: `${{Math.ceil(POLL_WAIT) + 60}}s`,
    }});
    check(r, {{ 'execution read (200 or not yet recorded)': (x) => x.status === 200 || x.status === 404 }});
    if (r.status === 200) status = r.json('status');
    // A long poll that came back early without an end (an API that does not wait) must not spin.
    pause = POLL_WAIT <= 0 || r.status !== 200 || r.timings.duration < POLL_WAIT * 500;
  }}
  const finished = TERMINAL.includes(status);
  if (finished) {{
    completed.add(1);
    completion.add(Date.now() - started);
  }}
  succeeded.add(status === 'SUCCEEDED');
  check(status, {{ 'execution SUCCEEDED': (s) => s === 'SUCCEEDED' }});
}}
"""
