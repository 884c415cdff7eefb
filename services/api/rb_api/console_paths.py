"""The paths of the web console's static files (rb_api.console), which need no credentials."""

from __future__ import annotations

import re

ASSET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
CONSOLE_PATHS = frozenset({"/", "/favicon.svg"})
ASSETS_PREFIX = "/assets/"


def is_console_file(path: str) -> bool:
    """`/`, `/favicon.svg` and `/assets/<name>`: the built page and its bundles, no data."""
    return path in CONSOLE_PATHS or (
        path.startswith(ASSETS_PREFIX) and ASSET_NAME.match(path[len(ASSETS_PREFIX) :]) is not None
    )
