#!/usr/bin/env bash
# `rb loadtest run` against a fresh `rb up` (its own nats-server on a free port, SQLite in a
# temporary RB_HOME), then the API's count of the executions by status: did every accepted
# execution SUCCEED?
#
#   bash bench/loadtest.sh [RUNBOOK] [-- rb loadtest run options]
#   bash bench/loadtest.sh rb-000-hello -- --vus 50 --duration 1m --poll-wait 10 --threshold 'http_req_duration=p(95)<100'
#   RB_UP_ARGS='--work-nice 0' bash bench/loadtest.sh rb-000-hello -- --vus 50 --duration 1m   # everything at one priority
#
# Defaults: 50 VUs for a minute, long polls (--poll-wait 10, also rb loadtest's own default),
# execute p95 < 100 ms; `rb up` with RB_UP_ARGS (default --work-idle: work services at nice 10
# under SCHED_IDLE; bench/rb_up.sh).
# Results and the machine's caveats: bench/loadtest.md.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUNBOOK="${1:-rb-000-hello}"
shift $(( $# >= 1 ? 1 : 0 ))
[[ "${1:-}" == "--" ]] && shift
OPTIONS=("$@")
[[ ${#OPTIONS[@]} -eq 0 ]] && OPTIONS=(--vus 50 --duration 1m --poll-wait 10 --threshold 'http_req_duration=p(95)<100')

# shellcheck source=bench/rb_up.sh
source "$ROOT/bench/rb_up.sh"

# CPU seconds (user + system) of each of rb up's processes; their children (shell steps) once reaped.
# An API process restarted during the run would lose its seconds: rb up's log says when one was.
cpu() {
  local pid name
  for pid in $(ps -o pid= --ppid "$UP"); do
    name="$(ps -o args= -p "$pid" | sed -E 's/.*rb_cli serve ([a-z]+).*/\1/; s/.*nats-server.*/nats-server/')"
    awk -v n="$name" -v hz="$(getconf CLK_TCK)" '{print n, ($14 + $15 + $16 + $17) / hz}' "/proc/$pid/stat" 2>/dev/null
  done | sort
}
echo "== $(date -u +%FT%TZ) rb up ${RB_UP_ARGS:-}; rb loadtest run $RUNBOOK ${OPTIONS[*]}"
echo "== load average: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores"
BEFORE="$(cpu)"
SUMMARY="$HOME_DIR/summary.json"
set +e
"$RB" loadtest run "$RUNBOOK" "${OPTIONS[@]}" --summary-json "$SUMMARY"
CODE=$?
set -e
AFTER="$(cpu)"
echo "== CPU seconds per service during the run (user+system, with reaped children), per execution and per request:"
"$ROOT/.venv/bin/python" - "$SUMMARY" <<PY
import json, sys
def seconds(text):  # per service, its processes added up (rb up runs two API processes)
    found = {}
    for line in text.splitlines():
        if line.strip():
            name, value = line.split()
            found[name] = found.get(name, 0.0) + float(value)
    return found
before, after = seconds("""$BEFORE"""), seconds("""$AFTER""")
try:
    metrics = json.load(open(sys.argv[1]))["metrics"]
except (OSError, ValueError, KeyError):
    metrics = {}
runs = int((metrics.get("rb_executions_completed") or {}).get("count") or 0)
requests = int((metrics.get("http_reqs") or {}).get("count") or 0)
for name in sorted(after):
    used = float(after[name]) - float(before.get(name, 0))
    per = f"{used / runs * 1000:.1f} ms/execution" if runs else ""
    extra = f", {used / requests * 1000:.2f} ms/request" if name == "api" and requests else ""
    print(f"  {name:12s} {used:7.2f} s  {per}{extra}")
PY
echo "== executions of $RUNBOOK by status (the API's record):"
KEY="$(cat "$RB_HOME/admin.key")"
for status in QUEUED RUNNING SUCCEEDED FAILED ABORTED CANCELLED; do
  curl -s -H "Authorization: Bearer $KEY" \
    "$RB_API_URL/api/v1/executions?runbook_id=$RUNBOOK&status=$status&limit=1" |
    "$ROOT/.venv/bin/python" -c "import json,sys; print('  $status', json.load(sys.stdin).get('total'))"
done
echo "== the execute route as the API timed it (rb_api_request_duration_seconds: from the first middleware to the answer):"
curl -s -H "Authorization: Bearer $KEY" "$RB_API_URL/metrics" | "$ROOT/.venv/bin/python" -c '
import sys
from prometheus_client.parser import text_string_to_metric_families
buckets = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    for sample in family.samples:
        labels = sample.labels
        if sample.name == "rb_api_request_duration_seconds_bucket" and labels.get("method") == "POST" and labels.get("route") == "/api/v1/runbooks/{runbook_id}/execute":
            buckets[labels["le"]] = int(sample.value)
total = buckets.get("+Inf", 0)
print("  " + ", ".join(f"<= {le} s: {n * 100 / total:.1f}%" for le, n in buckets.items() if le != "+Inf") if total else "  no execute requests")
'
echo "== load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
exit $CODE
