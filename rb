#!/usr/bin/env bash
# rb from a fresh clone: creates .venv on first use, then runs the rb CLI.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bash "$ROOT/scripts/bootstrap.sh"
if [ "${1:-}" = up ]; then bash "$ROOT/scripts/build-web.sh"; fi  # the web console the API serves at /
exec "$ROOT/.venv/bin/rb" "$@"
