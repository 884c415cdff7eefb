"""Fixtures for the notifier's integration tests (defined in notifier_peers). tests/unit/notifier
is put on sys.path so both suites build their executions with the same notifier_support."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "unit" / "notifier"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from notifier_peers import bus, consumers, notifiers, slack_api, smtp_server  # noqa: F401
