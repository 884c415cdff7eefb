#!/usr/bin/env bash
# Makes sure the services the tests need answer: PostgreSQL on 127.0.0.1:5432 (database `test`,
# trust auth for the local test user); installs Debian's
# prometheus-alertmanager for the test that drives a real one.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi; }
answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_for() { for _ in $(seq 1 100); do answers "$1" && return 0; sleep 0.1; done; return 1; }

ensure_postgres() {
  answers 5432 && return 0
  if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    echo "services: installing PostgreSQL ..." >&2
    as_root apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq postgresql >/dev/null
  fi
  local version; version="$(ls /etc/postgresql | sort -V | tail -n1)"
  local hba="/etc/postgresql/$version/main/pg_hba.conf"
  if ! grep -q "rb-tests" "$hba" 2>/dev/null; then
    # Local test access only: loopback, trust, like the CI machines.
    as_root sh -c "printf '%s\n' '# rb-tests' 'host all all 127.0.0.1/32 trust' 'host all all ::1/128 trust' | cat - '$hba' > '$hba.new' && mv '$hba.new' '$hba' && chown postgres:postgres '$hba'"
  fi
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || as_root pg_ctlcluster "$version" main start
  wait_for 5432
  psql -h 127.0.0.1 -U postgres -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname='test'" | grep -q 1 \
    || psql -h 127.0.0.1 -U postgres -d postgres -c "CREATE DATABASE test" >/dev/null
}

ensure_alertmanager() {
  # For the end-to-end test with a real Alertmanager; best effort: without it that test skips.
  command -v prometheus-alertmanager >/dev/null 2>&1 && return 0
  [ "$(id -u)" = 0 ] || { echo "services: prometheus-alertmanager missing (not root): its test will skip" >&2; return 0; }
  echo "services: installing prometheus-alertmanager ..." >&2
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      prometheus-alertmanager; } >/dev/null 2>&1 \
    || echo "services: could not install prometheus-alertmanager: its test will skip" >&2
}

ensure_postgres
ensure_alertmanager
