#!/usr/bin/env bash
# Overload against a fresh `rb up` (issue 15, "done when"): first a calm closed loop measures the
# completion rate C (executions/s) and the calm trigger-to-completion p95 T; then k6's
# constant-arrival-rate runs at FACTOR x C for a minute. The API should refuse what it cannot do
# with 429 (+ Retry-After), counted as refused, and the accepted executions should finish with a
# trigger-to-completion p95 within 2 x T. Without the 429 (the "fair" part of issue 15), every
# arrival is accepted and the backlog shows as a growing p95.
#
#   bash bench/overload.sh [RUNBOOK]
#   CALM_VUS=5 CALM_DURATION=1m FACTOR=10 OVERLOAD_DURATION=1m bash bench/overload.sh rb-000-hello
#
# The stack's bounds are sized to the machine, as an operator sizes them (docs/architecture.md,
# "Fair and bounded"): RUNNING executions at once (RB_MAX_RUNNING_EXECUTIONS, default CALM_VUS:
# what the calm loop runs at once) and a backlog of QUEUED (RB_MAX_QUEUED_EXECUTIONS, default
# half of RUNNING) before the API answers 429. By Little's law an accepted execution then waits
# at most about QUEUED / RUNNING of its own duration for a slot. Both loops follow executions
# with long polls (POLL_WAIT, default 10 s).
#
# Results and the machine's caveats: bench/loadtest.md.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUNBOOK="${1:-rb-000-hello}"
CALM_VUS="${CALM_VUS:-5}"
CALM_DURATION="${CALM_DURATION:-1m}"
FACTOR="${FACTOR:-10}"
OVERLOAD_DURATION="${OVERLOAD_DURATION:-1m}"
MAX_VUS="${MAX_VUS:-1000}"
RUNNING="${RUNNING:-$CALM_VUS}"
QUEUED="${QUEUED:-$(( (RUNNING + 1) / 2 ))}"
POLL_WAIT="${POLL_WAIT:-10}"
export RB_MAX_RUNNING_EXECUTIONS="$RUNNING" RB_MAX_QUEUED_EXECUTIONS="$QUEUED"

# shellcheck source=bench/rb_up.sh
source "$ROOT/bench/rb_up.sh"

# k6's summary: "<completed per second> <trigger-to-completion p95 in ms>".
figures() {
  "$PY" - "$1" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))["metrics"]
done = m.get("rb_executions_completed") or {}
t2c = m.get("rb_trigger_to_completion") or {}
print(float(done.get("rate") or 0), float(t2c.get("p(95)") or 0))
PY
}

echo "== $(date -u +%FT%TZ) bounds: $RUNNING running, $QUEUED queued; long polls of ${POLL_WAIT} s"
echo "== $(date -u +%FT%TZ) calm: $CALM_VUS VUs, $CALM_DURATION, closed loop; load average $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores"
set +e
"$RB" loadtest run "$RUNBOOK" --vus "$CALM_VUS" --duration "$CALM_DURATION" --poll-wait "$POLL_WAIT" \
  --summary-json "$HOME_DIR/calm.json"
set -e
read -r RATE P95 < <(figures "$HOME_DIR/calm.json")
ARRIVALS="$("$PY" -c "import math; print(max(1, math.ceil($RATE * $FACTOR * 60)))")"
echo "== calm: $RATE executions/s completed, trigger-to-completion p95 ${P95} ms"

echo "== $(date -u +%FT%TZ) overload: $FACTOR x = $ARRIVALS/m for $OVERLOAD_DURATION, open loop; load average $(cut -d' ' -f1-3 /proc/loadavg)"
set +e
"$RB" loadtest run "$RUNBOOK" --arrival-rate "$ARRIVALS/m" --duration "$OVERLOAD_DURATION" --vus "$MAX_VUS" \
  --poll-wait "$POLL_WAIT" \
  --threshold "rb_trigger_to_completion=p(95)<$("$PY" -c "print(int(2 * $P95))")" \
  --summary-json "$HOME_DIR/overload.json"
CODE=$?
set -e
read -r _ OVER_P95 < <(figures "$HOME_DIR/overload.json")
"$PY" - "$HOME_DIR/overload.json" "$P95" "$OVER_P95" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))["metrics"]
calm, over = float(sys.argv[2]), float(sys.argv[3])
count = lambda name: int((m.get(name) or {}).get("count") or 0)
print(f"== overload: accepted {count('rb_executions_accepted')}, refused (429) {count('rb_executions_refused')}, "
      f"not started by k6 {count('dropped_iterations')}")
verdict = "within" if over <= 2 * calm else "NOT within"
print(f"== trigger-to-completion p95 of the accepted: {over:.0f} ms vs calm {calm:.0f} ms: {verdict} 2x")
PY
echo "== load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
exit $CODE
