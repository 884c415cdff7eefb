#!/usr/bin/env bash
# Debian's docker-compose (1.29): `docker-compose config -q` checks docker-compose.yml without an
# engine (tests/integration/deploy). Installed when missing, skipped when present; safe to rerun.
set -euo pipefail
command -v docker-compose >/dev/null 2>&1 && exit 0
if [ "$(id -u)" != 0 ] && ! sudo -n true >/dev/null 2>&1; then
  echo "docker-compose: missing and this is not root: run 'apt-get install -y docker-compose' as root" >&2
  exit 1
fi
command -v apt-get >/dev/null 2>&1 || { echo "docker-compose: missing and there is no apt-get" >&2; exit 1; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi; }
echo "docker-compose: installing Debian's docker-compose ..." >&2
as_root apt-get update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends docker-compose >/dev/null
command -v docker-compose >/dev/null 2>&1 || { echo "docker-compose: installed, yet not on PATH" >&2; exit 1; }
