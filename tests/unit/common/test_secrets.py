"""Step secrets come from RB_SECRET_<NAME>; RB_SECRET_KEY, renamed RB_MASTER_KEY, is never one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from rb_common.secrets import mask, renamed_notices, secrets_from_env
from rb_common.settings import Settings
from rb_notifier.config import NotifierConfig

REPO = Path(__file__).resolve().parents[3]


def test_step_secrets_exclude_the_renamed_key() -> None:
    env = {"RB_SECRET_API_TOKEN": "t0ken", "RB_SECRET_KEY": "old-master", "RB_MASTER_KEY": "m", "HOME": "/"}
    assert secrets_from_env(env) == {"API_TOKEN": "t0ken"}


def test_a_set_rb_secret_key_gives_one_line_naming_the_new_name() -> None:
    assert renamed_notices({"RB_SECRET_API_TOKEN": "x"}) == []
    [notice] = renamed_notices({"RB_SECRET_KEY": "old"})
    assert "RB_SECRET_KEY was renamed to RB_MASTER_KEY" in notice and "\n" not in notice
    assert "old" not in notice  # never the value


def test_settings_read_the_master_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RB_SECRET_KEY", "stale")
    assert Settings().master_key is None
    monkeypatch.setenv("RB_MASTER_KEY", "m4ster-key")
    settings = Settings()
    assert isinstance(settings.master_key, SecretStr)
    assert settings.master_key.get_secret_value() == "m4ster-key"
    assert "m4ster-key" not in repr(settings)
    assert not hasattr(settings, "secret_key")


def test_the_notifier_never_shows_the_master_key_or_the_stale_one() -> None:
    settings = Settings(master_key=SecretStr("m4ster-key"))
    config = NotifierConfig.from_settings(settings, {"RB_SECRET_KEY": "stale-key", "RB_SECRET_DB": "dbpass"})
    assert mask("m4ster-key stale-key dbpass", config.secrets) == "*** *** ***"


def test_the_cli_prints_the_rename_once_and_still_works(tmp_path: Path) -> None:
    env = {**os.environ, "RB_SECRET_KEY": "stale-value", "RB_HOME": str(tmp_path), "NO_COLOR": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "rb_cli", "validate", str(REPO / "runbooks" / "rb-000-hello")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if "RB_SECRET_KEY" in line]
    assert lines == [
        "rb: RB_SECRET_KEY was renamed to RB_MASTER_KEY: set RB_MASTER_KEY instead "
        "(RB_SECRET_KEY is ignored and never given to steps)"
    ]
    assert "stale-value" not in result.stdout + result.stderr
