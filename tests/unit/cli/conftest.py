"""The CLI in this process: `rb(*args)` runs the real `rb` app (the console script's object) and
returns its exit code, stdout and stderr."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from rb_cli.main import app

REPO = Path(__file__).resolve().parents[3]

Rb = Callable[..., tuple[int, str, str]]


@pytest.fixture
def rb(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Rb:
    for name in ("RB_API_URL", "RB_API_KEY", "RB_DATABASE_URL", "RB_NATS_URL", "RB_NAMESPACE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RB_RUNBOOKS_DIR", str(REPO / "runbooks"))
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "200")

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_:
            app(list(args), prog_name="rb")
        out, err = capsys.readouterr()
        code = exit_.value.code
        return (code if isinstance(code, int) else 0 if code is None else 1), out, err

    return run
