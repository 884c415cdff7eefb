"""Fixtures of the console's end-to-end tests: they live in web_support (imported by name), which
uses the stack helpers of tests/integration/services/services_support."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "services"))

from services_support import postgres_database  # noqa: F401
from web_support import browser, console, stack  # noqa: F401
