#!/usr/bin/env bash
# Builds the web console (web/ -> web/dist, served by the API at /) when it is missing or older
# than its sources: npm ci from package-lock.json, then vite. Run by ./rb up and scripts/test;
# safe to run again. Needs Node.js >= 18 (installed with apt when missing and allowed).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WEB="$ROOT/web"
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi; }

if ! command -v npm >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && as_root true 2>/dev/null; then
    echo "build-web: installing Node.js and npm (apt) ..." >&2
    as_root apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq nodejs npm >/dev/null
  else
    echo "build-web: npm is missing: install Node.js >= 18 to build the web console (the API runs without it)" >&2
    exit 0
  fi
fi

# The build is current when its stamp names the hash of every source file of the console.
sources="$(cd "$WEB" && find package.json package-lock.json index.html vite.config.ts tsconfig.json public src -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)"
stamp="$WEB/dist/.rb-built"
if [ -f "$WEB/dist/index.html" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$sources" ]; then
  exit 0
fi
lock="$(sha256sum "$WEB/package-lock.json" | cut -d' ' -f1)"
if [ ! -f "$WEB/node_modules/.rb-lock" ] || [ "$(cat "$WEB/node_modules/.rb-lock")" != "$lock" ]; then
  echo "build-web: npm ci (web/package-lock.json) ..." >&2
  (cd "$WEB" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  echo "$lock" > "$WEB/node_modules/.rb-lock"
fi
echo "build-web: building the web console into web/dist ..." >&2
(cd "$WEB" && npm run --silent build >/dev/null)
echo "$sources" > "$stamp"
