# Sourced by bench/loadtest.sh and bench/overload.sh: a fresh `rb up` (its own nats-server on a
# free port, SQLite under a temporary RB_HOME, RB_RUNBOOKS_DIR loaded) started in its own session,
# stopped (Ctrl-C to the group) and removed on exit. Needs ROOT; takes RB_UP_ARGS (words for
# `rb up`, e.g. --work-nice 0; unset: --work-idle, the work only on CPU time the API and NATS
# leave, as session 5 measured; set, even empty, it replaces that). Sets RB, PY, HOME_DIR, UP and
# exports RB_HOME, RB_API_URL.
RB="$ROOT/.venv/bin/rb"
PY="$ROOT/.venv/bin/python"
HOME_DIR="$(mktemp -d /tmp/rb-bench.XXXXXX)"
PORT="$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
export RB_HOME="$HOME_DIR/home" RB_API_ADDR="127.0.0.1:$PORT" RB_API_URL="http://127.0.0.1:$PORT" \
  RB_RUNBOOKS_DIR="$ROOT/runbooks" NO_COLOR=1
unset RB_NATS_URL RB_DATABASE_URL RB_API_KEY RB_BOOTSTRAP_ADMIN_KEY RB_NAMESPACE

mkdir -p "$RB_HOME" && : >"$HOME_DIR/up.log"
# shellcheck disable=SC2086  # RB_UP_ARGS is words
RB_UP_ARGS="${RB_UP_ARGS---work-idle}"
setsid "$RB" up ${RB_UP_ARGS} >"$HOME_DIR/up.log" 2>&1 &
UP=$!
trap 'kill -INT -- -$UP 2>/dev/null; wait $UP 2>/dev/null; rm -rf "$HOME_DIR"' EXIT
for _ in $(seq 300); do grep -q "press Ctrl-C" "$HOME_DIR/up.log" && break; sleep 1; done
grep -q "press Ctrl-C" "$HOME_DIR/up.log" || { cat "$HOME_DIR/up.log"; exit 1; }
