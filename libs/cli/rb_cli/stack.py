"""Where a running `rb up` stack is: `RB_HOME/stack.json`, written by `rb up`, read by the CLI;
and the API key the CLI sends: RB_API_KEY, else `RB_HOME/admin.key` (written by `rb up`).

`rb up` writes the API URL, NATS URL and namespace it uses; `rb trigger`, `rb replay`,
`rb executions` ... read them first, so they talk to that stack and not to whatever answers on
4222 or 8080. What the environment sets explicitly (RB_NATS_URL, RB_NAMESPACE, RB_API_URL)
still wins; a file left by a stack that is no longer running is ignored.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rb_common.settings import Settings

FILE_NAME = "stack.json"
ADMIN_KEY_FILE = "admin.key"


@dataclass(frozen=True)
class Stack:
    api_url: str
    nats_url: str
    namespace: str
    pid: int
    # Each service's Prometheus /metrics URL under `rb up` (the API's needs a viewer key).
    metrics: dict[str, str] = field(default_factory=dict)

    def write(self, home: Path) -> Path:
        path = home / FILE_NAME
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")
        tmp.replace(path)
        return path

    @staticmethod
    def remove(home: Path) -> None:
        (home / FILE_NAME).unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_stack(home: Path) -> Stack | None:
    """The stack recorded under `home`, if its `rb up` is still running."""
    try:
        data = json.loads((home / FILE_NAME).read_text(encoding="utf-8"))
        stack = Stack(
            api_url=str(data["api_url"]),
            nats_url=str(data["nats_url"]),
            namespace=str(data["namespace"]),
            pid=int(data["pid"]),
            metrics={str(k): str(v) for k, v in (data.get("metrics") or {}).items()},
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return stack if _alive(stack.pid) else None


def cli_settings() -> Settings:
    """Settings for the CLI's client commands: the environment, then the running stack's file."""
    settings = Settings()
    stack = read_stack(settings.home)
    if stack is None:
        return settings
    explicit = settings.model_fields_set
    overlay = {
        key: value
        for key, value in (
            ("nats_url", stack.nats_url),
            ("namespace", stack.namespace),
            ("api_url", stack.api_url),
        )
        if key not in explicit
    }
    return settings.model_copy(update=overlay)


def read_admin_key(home: Path) -> str | None:
    try:
        key = (home / ADMIN_KEY_FILE).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return key or None


def write_admin_key(home: Path, key: str) -> Path:
    """RB_HOME/admin.key, mode 0600 from the start (never readable by others, not even briefly)."""
    path = home / ADMIN_KEY_FILE
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(key + "\n")
    os.chmod(tmp, 0o600)
    tmp.replace(path)
    return path


def api_key(settings: Settings) -> str | None:
    """The API key the CLI sends: RB_API_KEY, else RB_HOME/admin.key."""
    if settings.api_key is not None and settings.api_key.get_secret_value().strip():
        return settings.api_key.get_secret_value().strip()
    return read_admin_key(settings.home)


def auth_headers(settings: Settings) -> dict[str, str]:
    key = api_key(settings)
    return {"Authorization": f"Bearer {key}"} if key else {}
