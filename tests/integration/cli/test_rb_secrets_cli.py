"""`rb secrets`: values from stdin only, encrypted at rest (the database file never holds one),
rotation re-encrypts with the newest key and keeps every value readable; never printed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from pydantic import SecretStr

from rb_common.secrets import generate_key
from rb_common.settings import Settings
from rb_store.secrets import StoreSecrets

VALUE = "cli-s3cret-p4ssw0rd-value"


def rb(home: Path, key: str, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RB_")}
    env.update({"RB_HOME": str(home), "RB_MASTER_KEY": key})
    return subprocess.run(
        [sys.executable, "-m", "rb_cli", "secrets", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def load(home: Path, key: str) -> dict[str, str]:
    return StoreSecrets(Settings(home=home, master_key=SecretStr(key))).load()


def test_set_list_rotate_delete(tmp_path: Path) -> None:
    old, new = generate_key(), generate_key()
    assert rb(tmp_path, old, "set", "DB_PASSWORD", stdin=VALUE + "\n").returncode == 0
    assert rb(tmp_path, old, "set", "OTHER", stdin="other-value-123").returncode == 0
    for path in tmp_path.glob("rb.db*"):
        assert VALUE.encode() not in path.read_bytes(), path
    listed = rb(tmp_path, old, "list")
    assert listed.returncode == 0 and "DB_PASSWORD" in listed.stdout and VALUE not in listed.stdout

    rotated = rb(tmp_path, f"{new},{old}", "rotate")
    assert rotated.returncode == 0 and "re-encrypted 2" in rotated.stdout
    assert load(tmp_path, new) == {"DB_PASSWORD": VALUE, "OTHER": "other-value-123"}  # new key alone
    assert load(tmp_path, old) == {}  # the old key reads nothing any more
    for path in tmp_path.glob("rb.db*"):
        assert VALUE.encode() not in path.read_bytes(), path

    wrong = rb(tmp_path, generate_key(), "rotate")
    assert wrong.returncode == 2 and "cannot be decrypted" in wrong.stderr
    assert load(tmp_path, new)["DB_PASSWORD"] == VALUE  # a failed rotation changes nothing
    assert rb(tmp_path, new, "delete", "OTHER").returncode == 0
    assert rb(tmp_path, new, "delete", "OTHER").returncode == 2
    assert load(tmp_path, new) == {"DB_PASSWORD": VALUE}


def test_no_master_key_is_a_clear_error(tmp_path: Path) -> None:
    result = rb(tmp_path, "", "set", "X_TOKEN", stdin="value-1234")
    assert result.returncode == 2 and "RB_MASTER_KEY is not set" in result.stderr
    bad = rb(tmp_path, "not-a-fernet-key", "set", "X_TOKEN", stdin="value-1234")
    assert bad.returncode == 2 and "not a Fernet key" in bad.stderr and "not-a-fernet-key" not in bad.stderr
