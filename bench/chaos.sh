#!/usr/bin/env bash
# The long chaos run (issue 19): tests/chaos/test_chaos_short.py with the load and the kills (one
# executor, the NATS node leading the events stream, alternating) kept going for N minutes.
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
RB_CHAOS=1 RB_CHAOS_MINUTES="$MINUTES" RB_CHAOS_SEED="$SEED" \
  exec .venv/bin/pytest -q -s -p no:cacheprovider tests/chaos/test_chaos_short.py
