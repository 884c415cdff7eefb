"""Which sandbox a shell step gets: as root, a step user of its own and a process-count limit;
not as root, the worker's own user, said once in the log."""

from __future__ import annotations

import logging
import os
import pwd
from pathlib import Path

import pytest

from rb_common.settings import Settings
from rb_engine.steps import sandbox as sandbox_module
from rb_engine.steps.base import StepFailed
from rb_engine.steps.sandbox import announce, make_workdir, shell_sandbox, sweep_workdirs

MB = 1024 * 1024


def test_as_root_the_step_runs_as_nobody_with_every_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox_module.os, "geteuid", lambda: 0)
    nobody = pwd.getpwnam("nobody")
    sandbox = shell_sandbox(Settings(shell_memory_mb=300, shell_max_processes=9))
    assert (sandbox.user, sandbox.uid, sandbox.gid) == ("nobody", nobody.pw_uid, nobody.pw_gid)
    assert dict((name, (soft, hard)) for name, soft, hard in sandbox.limits) == {
        "RLIMIT_CPU": (3600, 3600),
        "RLIMIT_AS": (300 * MB, 300 * MB),
        "RLIMIT_FSIZE": (1024 * MB, 1024 * MB),
        "RLIMIT_NPROC": (9, 9),
    }
    with pytest.raises(StepFailed, match="never run as root"):
        shell_sandbox(Settings(shell_user="root"))


def test_not_as_root_the_step_runs_as_the_worker_and_the_log_says_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(sandbox_module.os, "geteuid", lambda: 4242)
    monkeypatch.setattr(sandbox_module, "_announced", set())
    settings = Settings(shell_user="nobody")
    sandbox = shell_sandbox(settings)
    assert sandbox.uid is None and sandbox.gid is None
    assert "RLIMIT_NPROC" not in [name for name, _, _ in sandbox.limits]  # the worker's uid: not its own
    with caplog.at_level(logging.INFO, logger="rb_engine.steps.sandbox"):
        announce(sandbox, settings)
        announce(sandbox, settings)
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert "does not run as root" in record.getMessage()
    assert "RB_SHELL_USER=nobody ignored" in record.getMessage()


def test_comma_separated_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RB_SHELL_CWD_ROOTS", "/srv/runbooks, /var/lib/rb")
    monkeypatch.setenv("RB_EGRESS_ALLOW", "127.0.0.1/32,db.internal")
    settings = Settings()
    assert [str(p) for p in settings.shell_cwd_roots] == ["/srv/runbooks", "/var/lib/rb"]
    assert settings.egress_allow == ["127.0.0.1/32", "db.internal"]


def test_attempt_directories_of_processes_that_are_gone_are_swept(tmp_path: Path) -> None:
    settings = Settings(shell_work_dir=tmp_path)
    mine = make_workdir(settings, shell_sandbox(settings))
    gone = [tmp_path / f"rb-step-{2**22 + 7}-123-abc", tmp_path / f"rb-step-{os.getpid()}-1-reused-pid"]
    for path in gone:
        (path / "sub").mkdir(parents=True)
    other = tmp_path / "rb-stepping-stone"
    other.mkdir()
    assert sweep_workdirs(settings) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([mine.name, other.name])
