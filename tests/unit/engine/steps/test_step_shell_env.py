from __future__ import annotations

import pytest

from rb_engine.steps.shell import scrubbed_env


def test_scrubbed_env_keeps_only_the_basics(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/opt/bin:/usr/bin")
    monkeypatch.setenv("HOME", "/home/rb")
    monkeypatch.setenv("LANG", "C.UTF-8")
    monkeypatch.setenv("RB_SECRET_KEY", "hunter2")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    env = scrubbed_env({"MODE": "dry-run"})
    assert env == {"PATH": "/opt/bin:/usr/bin", "HOME": "/home/rb", "LANG": "C.UTF-8", "MODE": "dry-run"}


def test_scrubbed_env_has_a_path_even_when_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PATH", raising=False)
    monkeypatch.delenv("HOME", raising=False)
    monkeypatch.delenv("LANG", raising=False)
    assert scrubbed_env(None) == {"PATH": "/usr/local/bin:/usr/bin:/bin"}
