"""Step secrets: where they come from (providers) and how they are kept out of every record
(masking of the values and of their common encodings).

Providers, first wins for a name: the environment (`RB_SECRET_<NAME>`), a mounted directory
(`RB_SECRETS_DIR`: one file per secret, as Kubernetes secret volumes and Vault agent templates
write them), then the encrypted store in the database (rb_store.secrets). Only whoever runs steps
resolves them, just before the step runs; nothing else ever holds a value.

Masking: a value is replaced by `***` wherever it appears in a step's result, error or meta, and
so are the forms a step may turn it into: upper or lower case (any case, in fact), reversed,
base64 (standard and URL-safe, with or without padding, also inside a longer encoded text), URL
encoded and hex. Values an expression derived from a secret (`${upper(secrets.X)}`,
`"Bearer ${secrets.X}"`) are masked the same way, as a whole.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, quote_plus

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

log = logging.getLogger(__name__)

MASK = "***"
ENV_PREFIX = "RB_SECRET_"
# RB_SECRET_KEY was rb's own key before it became RB_MASTER_KEY: never a step secret, so a stale
# deployment cannot hand it to steps as ${secrets.KEY}.
RENAMED = {"RB_SECRET_KEY": "RB_MASTER_KEY"}
# Values (and encodings) shorter than this are not masked: `***` everywhere a 2-letter word
# appears would hide more than it protects.
MIN_MASKED = 4
NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")
# A file in RB_SECRETS_DIR larger than this is not a secret (and is not read).
MAX_SECRET_BYTES = 64 * 1024


def secrets_from_env(environ: Mapping[str, str]) -> dict[str, str]:
    """Step secrets of this process: RB_SECRET_<NAME>=value gives ${secrets.NAME}. They live
    with whoever runs steps and never travel in an event or a message."""
    return {
        k[len(ENV_PREFIX) :]: v for k, v in environ.items() if k.startswith(ENV_PREFIX) and k not in RENAMED
    }


def secrets_from_dir(directory: Path) -> dict[str, str]:
    """One secret per regular file of `directory`, named by the file (Kubernetes secret volumes,
    Vault agent templates). Hidden entries (Kubernetes' `..data` links) and names that are not
    identifiers are skipped; one trailing newline is dropped (`echo` and most templates add one)."""
    found: dict[str, str] = {}
    try:
        entries = sorted(directory.iterdir())
    except OSError as exc:
        log.warning("cannot read the secrets directory %s: %s", directory, exc.strerror or exc)
        return found
    for entry in entries:
        if entry.name.startswith(".") or not NAME_PATTERN.match(entry.name):
            continue
        try:
            if not entry.is_file() or entry.stat().st_size > MAX_SECRET_BYTES:
                continue
            value = entry.read_bytes().decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            log.warning("skipping secret file %s: %s", entry.name, type(exc).__name__)
            continue
        found[entry.name] = value[:-1] if value.endswith("\n") else value
    return found


def renamed_notices(environ: Mapping[str, str]) -> list[str]:
    """One line per set variable that was renamed, for services and the CLI to print at start."""
    return [
        f"{old} was renamed to {new}: set {new} instead ({old} is ignored and never given to steps)"
        for old, new in RENAMED.items()
        if old in environ
    ]


# -- providers ---------------------------------------------------------------------------------


class SecretSource(Protocol):
    """One provider: every secret it has, by name."""

    def load(self) -> dict[str, str]: ...


class EnvSecrets:
    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ

    def load(self) -> dict[str, str]:
        return secrets_from_env(self.environ)


class DirSecrets:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def load(self) -> dict[str, str]:
        return secrets_from_dir(self.directory)


class StaticSecrets:
    def __init__(self, values: Mapping[str, str]) -> None:
        self.values = dict(values)

    def load(self) -> dict[str, str]:
        return dict(self.values)


class SecretResolver:
    """The secrets a worker gives its steps: every source, earlier ones first for a name, read
    again at most every `ttl` seconds (so a secret set while the worker runs is used soon, and a
    burst of steps costs one read). A source that fails keeps its last good values."""

    def __init__(self, sources: Iterable[SecretSource], *, ttl: float = 5.0) -> None:
        self.sources = list(sources)
        self.ttl = ttl
        self._lock = threading.Lock()
        self._values: dict[str, str] = {}
        self._last: list[dict[str, str]] = [{} for _ in self.sources]
        self._loaded_at: float | None = None

    def values(self) -> dict[str, str]:
        with self._lock:
            now = time.monotonic()
            if self._loaded_at is None or now - self._loaded_at >= self.ttl:
                merged: dict[str, str] = {}
                for index, source in enumerate(self.sources):
                    try:
                        self._last[index] = source.load()
                    except Exception as exc:  # a database away must not stop every step
                        log.warning("secret source %s failed: %s", type(source).__name__, type(exc).__name__)
                    for name, value in self._last[index].items():
                        merged.setdefault(name, value)
                self._values = merged
                self._loaded_at = now
            return dict(self._values)

    def fresh(self) -> dict[str, str] | None:
        """The values if they need no re-read, else None: lets a caller skip the thread hop
        that a read (a database, files) needs, on every step but one per `ttl`."""
        loaded_at = self._loaded_at
        if loaded_at is None or time.monotonic() - loaded_at >= self.ttl:
            return None
        return dict(self._values)

    def cached(self) -> list[str]:
        """The values as last read, without reading (for log filters)."""
        return list(self._values.values())


# -- encryption at rest ----------------------------------------------------------------------


class MasterKeyError(ValueError):
    """RB_MASTER_KEY is missing or is not a list of Fernet keys (never says what it holds)."""


def generate_key() -> str:
    return Fernet.generate_key().decode()


def keyring(master_key: str | None) -> MultiFernet:
    """The store's keys from RB_MASTER_KEY: comma-separated Fernet keys, newest first. The first
    encrypts; any of them decrypts (so a rotation can add a key, re-encrypt, then drop the old)."""
    parts = [p.strip() for p in (master_key or "").split(",") if p.strip()]
    if not parts:
        raise MasterKeyError("RB_MASTER_KEY is not set: the secret store needs it (`rb secrets keygen`)")
    keys = []
    for position, part in enumerate(parts, start=1):
        try:
            keys.append(Fernet(part.encode()))
        except (ValueError, binascii.Error):
            raise MasterKeyError(
                f"RB_MASTER_KEY key #{position} is not a Fernet key (32 url-safe base64-encoded bytes; "
                "`rb secrets keygen` makes one)"
            ) from None
    return MultiFernet(keys)


def seal(keys: MultiFernet, name: str, value: str) -> str:
    """The token stored for `name`: the value bound to its name, so a token copied to another
    row does not decrypt as that row's secret."""
    return keys.encrypt(json.dumps({"name": name, "value": value}).encode()).decode()


def unseal(keys: MultiFernet, name: str, token: str) -> str:
    try:
        data = json.loads(keys.decrypt(token.encode()))
    except (InvalidToken, ValueError):
        raise MasterKeyError(f"secret {name!r} cannot be decrypted with RB_MASTER_KEY") from None
    if not isinstance(data, dict) or data.get("name") != name or not isinstance(data.get("value"), str):
        raise MasterKeyError(f"secret {name!r} was sealed for another name")
    return str(data["value"])


def check_name(name: str) -> str | None:
    """Why `name` cannot name a secret, or None."""
    if not NAME_PATTERN.match(name):
        return "a secret name is a letter or _ then letters, digits or _ (at most 100)"
    return None


def check_value(value: str) -> str | None:
    if not value:
        return "a secret value may not be empty"
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        return "a secret value must be valid Unicode (no lone surrogates)"
    if size > MAX_SECRET_BYTES:
        return f"a secret value may be at most {MAX_SECRET_BYTES} bytes"
    return None


# -- masking ---------------------------------------------------------------------------------


def _base64_forms(raw: bytes) -> set[str]:
    """The secret base64-encoded whole (padded or not, standard or URL-safe), and the part of its
    encoding that is the same wherever it sits inside a longer encoded text (one per alignment
    of its first byte to the 3-byte groups)."""
    forms: set[str] = set()
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        whole = encode(raw).decode()
        forms.update({whole, whole.rstrip("=")})
        for skip in range(3):
            tail = raw[skip:]
            usable = len(tail) - len(tail) % 3
            if usable >= 3:
                forms.add(encode(tail[:usable]).decode())
    return forms


def variants(value: str) -> tuple[set[str], set[str]]:
    """(case-insensitive forms, exact forms) under which `value` is masked."""
    raw = value.encode("utf-8", "surrogatepass")
    folded = {value, value[::-1], quote(value, safe=""), quote(value), quote_plus(value), raw.hex()}
    exact = _base64_forms(raw)
    return {v for v in folded if len(v) >= MIN_MASKED}, {v for v in exact if len(v) >= MIN_MASKED}


@lru_cache(maxsize=64)
def _pattern(values: tuple[str, ...]) -> re.Pattern[str] | None:
    folded: set[str] = set()
    exact: set[str] = set()
    for value in values:
        f, e = variants(value)
        folded |= f
        exact |= e
    needles = [(v, True) for v in folded] + [(v, False) for v in exact - folded]
    if not needles:
        return None
    # Longest first: where forms overlap, the whole of the longest is masked.
    needles.sort(key=lambda item: len(item[0]), reverse=True)
    return re.compile("|".join(f"(?i:{re.escape(v)})" if fold else re.escape(v) for v, fold in needles))


def _unchanged(text: str) -> str:
    return text


def masker(secrets: Iterable[str]) -> Callable[[str], str]:
    """A function masking every secret of `secrets` (and its encodings) in a text."""
    values = tuple(sorted({s for s in secrets if isinstance(s, str) and len(s) >= MIN_MASKED}))
    pattern = _pattern(values) if values else None
    if pattern is None:
        return _unchanged
    return lambda text: pattern.sub(MASK, text)


def mask(value: Any, secrets: Iterable[str]) -> Any:
    """`value` with every occurrence of any secret (of 4+ characters), in any of its encodings,
    replaced by ***. With no secret to mask, `value` itself (nothing in it would change)."""
    sub = masker(secrets)
    if sub is _unchanged:
        return value
    return _mask(value, sub)


def _mask(value: Any, sub: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return sub(value)
    if isinstance(value, list):
        return [_mask(v, sub) for v in value]
    if isinstance(value, tuple):
        return tuple(_mask(v, sub) for v in value)
    if isinstance(value, dict):
        return {_mask(k, sub): _mask(v, sub) for k, v in value.items()}
    return value


def string_leaves(value: Any) -> list[str]:
    """Every string inside `value` (values derived from a secret are masked leaf by leaf)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple):
        return [s for v in value for s in string_leaves(v)]
    if isinstance(value, dict):
        return [s for v in value.values() for s in string_leaves(v)]
    return []


class MaskingFilter(logging.Filter):
    """A logging filter that masks the secrets `values()` returns in every record it passes
    (message and arguments), for handlers of processes that hold secrets."""

    def __init__(self, values: Callable[[], Iterable[str]]) -> None:
        super().__init__()
        self.values = values

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            secrets = list(self.values())
        except Exception:
            return True
        if not secrets:
            return True
        sub = masker(secrets)
        try:
            text = record.getMessage()
        except Exception:
            return True
        record.msg = sub(text)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = sub(record.exc_text)
        return True
