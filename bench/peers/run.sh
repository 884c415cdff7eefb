#!/usr/bin/env bash
# rb vs Prefect 3 on the same 40-step no-op chain (see README.md; options: peers.py --help).
#   bash bench/peers/run.sh [--rounds 5] [--per-round 5] [--warmup 3] [--steps 40] [--keep]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
[ -x "$ROOT/.venv/bin/python" ] || bash "$ROOT/scripts/bootstrap.sh"
exec "$ROOT/.venv/bin/python" "$ROOT/bench/peers/peers.py" "$@"
