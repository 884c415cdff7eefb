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
# Two fixes the harness got later, given to an older baseline's harness (e.g. e19fee1's); its
# services are not touched. (1) It started the clock after a fixed 3 s sleep: on a loaded machine
# the recorder was not up by then, started at NEW after the first events, stayed behind a
# sequence gap and left the baseline's executor the whole machine; it now waits for the
# services' consumers as the current harness does. (2) A chain that finished before its
# trigger's publish was acknowledged had its waiter gone (KeyError); the waiter is kept.
"$ROOT/.venv/bin/python" - "$TREE/bench/e2e_throughput.py" <<'PATCH'
import sys
from pathlib import Path

path = Path(sys.argv[1])
text = path.read_text()
sleep = "        await asyncio.sleep(3)  # services connect and create their consumers\n"
if "consumers_ready" not in text and sleep in text:
    wait = """        wanted = [("RB_TRIGGERS", "executor-triggers-q"), ("RB_TASKS", "workers")]
        if not args.no_recorder:
            wanted.append(("RB_EVENTS", f"recorder-{home.name}"))
        for stream, durable in wanted:  # services connect and create their consumers
            for _ in range(1200):
                try:
                    await bus.js.consumer_info(stream, durable)
                    break
                except Exception:
                    await asyncio.sleep(0.1)
"""
    text = text.replace(sleep, wait)
    print("(baseline harness: waits for the services' consumers instead of a fixed 3 s)")
made = "            watcher.waiters[ex] = asyncio.get_running_loop().create_future()\n"
if made in text:
    text = text.replace(made, made.replace("watcher.waiters[ex] =", "waiter = watcher.waiters[ex] ="))
    text = text.replace("asyncio.wait_for(watcher.waiters[ex], 60)", "asyncio.wait_for(waiter, 60)")
path.write_text(text)
PATCH

paths() {
  local tree="$1" out=""
  for dir in "$tree"/libs/* "$tree"/services/*; do out="$out:$dir"; done
  echo "${out#:}"
}

for round in $(seq 1 "$ROUNDS"); do
  echo "== round $round: baseline $BASE"
  (cd "$TREE" && PYTHONPATH="$(paths "$TREE")" "$PY" bench/e2e_throughput.py "${OPTIONS[@]}" | grep -E '^(throughput|latency)') \
    || echo "(this run failed; the other rounds go on)"
  echo "== round $round: working tree"
  (cd "$ROOT" && PYTHONPATH="$(paths "$ROOT")" "$PY" bench/e2e_throughput.py "${OPTIONS[@]}" | grep -E '^(throughput|latency)') \
    || echo "(this run failed; the other rounds go on)"
done
