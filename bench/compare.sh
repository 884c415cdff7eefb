#!/usr/bin/env bash
# Side by side: bench/e2e_throughput.py on a baseline git ref and on the working tree, alternating
# so both see the same machine (its speed drifts), ROUNDS times each.
#
#   bash bench/compare.sh BASE_REF [ROUNDS] [-- e2e_throughput.py options]
#
# The baseline runs from a temporary worktree with its packages first on PYTHONPATH, in the same
# .venv (so a baseline needing other dependencies is out of scope).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BASE="${1:?usage: compare.sh BASE_REF [ROUNDS] [-- bench options]}"
ROUNDS="${2:-3}"
shift $(( $# >= 2 ? 2 : 1 ))
[[ "${1:-}" == "--" ]] && shift
OPTIONS=("$@")
[[ ${#OPTIONS[@]} -eq 0 ]] && OPTIONS=(--executions 300 --chains 20)

PY="$ROOT/.venv/bin/python"
TREE="$(mktemp -d /tmp/rb-bench-base.XXXXXX)"
trap 'git -C "$ROOT" worktree remove --force "$TREE" >/dev/null 2>&1 || rm -rf "$TREE"' EXIT
git -C "$ROOT" worktree add --detach --force "$TREE" "$BASE" >/dev/null 2>&1

paths() {
  local tree="$1" out=""
  for dir in "$tree"/libs/* "$tree"/services/*; do out="$out:$dir"; done
  echo "${out#:}"
}

for round in $(seq 1 "$ROUNDS"); do
  echo "== round $round: baseline $BASE"
  (cd "$TREE" && PYTHONPATH="$(paths "$TREE")" "$PY" bench/e2e_throughput.py "${OPTIONS[@]}" | grep -E '^(throughput|latency)')
  echo "== round $round: working tree"
  (cd "$ROOT" && PYTHONPATH="$(paths "$ROOT")" "$PY" bench/e2e_throughput.py "${OPTIONS[@]}" | grep -E '^(throughput|latency)')
done
