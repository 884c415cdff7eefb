#!/usr/bin/env bash
# Debian's Chromium for ui_screenshot (Playwright cannot download browsers here): installed when
# missing, skipped when present. Run by scripts/test; safe to run again.
set -euo pipefail
CHROMIUM="${RB_CHROMIUM_PATH:-/usr/bin/chromium}"
[ -x "$CHROMIUM" ] && exit 0
if [ "$(id -u)" != 0 ] && ! sudo -n true >/dev/null 2>&1; then
  echo "chromium: $CHROMIUM is missing and this is not root: run 'apt-get install -y chromium' as root" >&2
  exit 1
fi
command -v apt-get >/dev/null 2>&1 || { echo "chromium: $CHROMIUM is missing and there is no apt-get: install Chromium" >&2; exit 1; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi; }
echo "chromium: installing Debian's chromium for ui_screenshot ..." >&2
as_root apt-get update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq chromium >/dev/null
[ -x "$CHROMIUM" ] || { echo "chromium: installed, yet $CHROMIUM is missing (set RB_CHROMIUM_PATH)" >&2; exit 1; }
