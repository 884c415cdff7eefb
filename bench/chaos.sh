#!/usr/bin/env bash
# The long chaos run (issue 19): tests/chaos/test_chaos_short.py with the load and the kills (any
# service, the NATS node leading the events stream, PostgreSQL) kept going for N minutes.
#
#   bash bench/chaos.sh --minutes 30 [--seed 19]
#
# Prints the numbers (executions, kills, leader changes, latency p50/p95) on success.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MINUTES=5
SEED=19
while [[ $# -gt 0 ]]; do
  case "$1" in
    --minutes) MINUTES="${2:?--minutes N}"; shift 2 ;;
    --seed) SEED="${2:?--seed N}"; shift 2 ;;
    *) echo "usage: chaos.sh --minutes N [--seed N]" >&2; exit 2 ;;
  esac
done
cd "$ROOT"
# A base directory of its own: pytest keeps only the last 3 numbered ones under
# /tmp/pytest-of-$USER, and other pytest runs on the machine would delete this one (NATS stores,
# logs) while it runs. The logs stay there after the run.
BASETEMP="${TMPDIR:-/tmp}/rb-chaos-$(date -u +%Y%m%dT%H%M%S)-seed$SEED"
echo "chaos: logs and stores under $BASETEMP" >&2
RB_CHAOS_MINUTES="$MINUTES" RB_CHAOS_SEED="$SEED" \
  exec .venv/bin/pytest -q -s -p no:cacheprovider -p no:randomly --basetemp "$BASETEMP" \
  tests/chaos/test_chaos_short.py::test_executions_survive_kills_of_services_the_stream_leader_and_postgres
