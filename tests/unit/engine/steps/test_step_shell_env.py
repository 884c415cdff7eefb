from __future__ import annotations

import os
from pathlib import Path

import pytest

from rb_engine.steps.shell import scrubbed_env


def test_scrubbed_env_keeps_only_the_basics(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/opt/bin:/usr/bin")
    monkeypatch.setenv("HOME", "/home/rb")
    monkeypatch.setenv("TMPDIR", "/var/tmp/rb")
    monkeypatch.setenv("LANG", "C.UTF-8")
    monkeypatch.setenv("LC_TIME", "de_DE.UTF-8")
    monkeypatch.setenv("RB_SECRET_KEY", "hunter2")
    monkeypatch.setenv("RB_DATABASE_URL", "postgresql://u:p@db/x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    env = scrubbed_env({"MODE": "dry-run"}, Path("/tmp/rb-step-1"))
    assert env == {
        "PATH": "/opt/bin:/usr/bin",
        "HOME": "/tmp/rb-step-1",  # the step's own directory, never the worker's home
        "TMPDIR": "/tmp/rb-step-1",
        "LANG": "C.UTF-8",
        "LC_TIME": "de_DE.UTF-8",
        "MODE": "dry-run",
    }


def test_scrubbed_env_has_a_path_even_when_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PATH", "LANG", "LANGUAGE"):
        monkeypatch.delenv(name, raising=False)
    for name in [n for n in os.environ if n.startswith("LC_")]:
        monkeypatch.delenv(name)
    assert scrubbed_env(None, Path("/w")) == {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": "/w",
        "TMPDIR": "/w",
    }
