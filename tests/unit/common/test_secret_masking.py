"""Masking covers a secret's common encodings and values derived from it; providers and the
Fernet helpers (rb_common.secrets)."""

from __future__ import annotations

import asyncio
import base64
import logging
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest

from rb_common.loader import load_runbook_text
from rb_common.ports import InMemoryEventStore
from rb_common.secrets import (
    MASK,
    DirSecrets,
    MaskingFilter,
    MasterKeyError,
    SecretResolver,
    StaticSecrets,
    generate_key,
    keyring,
    mask,
    seal,
    unseal,
)
from rb_common.settings import Settings
from rb_engine.attempt import Revealed, resolve_secrets
from rb_engine.clock import FakeClock
from rb_engine.runner import PluginExecutor, Runner, RunRequest
from rb_engine.steps.registry import default_registry

SECRET = "s3cr3t-T0ken/with+chars=?"


def encodings(value: str) -> dict[str, str]:
    raw = value.encode()
    return {
        "literal": value,
        "upper": value.upper(),
        "lower": value.lower(),
        "reversed": value[::-1],
        "base64": base64.b64encode(raw).decode(),
        "base64 unpadded": base64.b64encode(raw).decode().rstrip("="),
        "base64 urlsafe": base64.urlsafe_b64encode(raw).decode(),
        "base64 urlsafe unpadded": base64.urlsafe_b64encode(raw).decode().rstrip("="),
        "url": quote(value, safe=""),
        "url (path)": quote(value),
        "url (form)": quote_plus(value),
        "hex": raw.hex(),
        "HEX": raw.hex().upper(),
    }


@pytest.mark.parametrize("form", list(encodings(SECRET)))
def test_every_encoding_is_masked_alone_and_inside_text(form: str) -> None:
    encoded = encodings(SECRET)[form]
    assert mask(encoded, [SECRET]) == MASK
    masked = mask(f"before {encoded} after", [SECRET])
    assert encoded not in masked and masked.startswith("before ") and masked.endswith(" after")


@pytest.mark.parametrize("prefix", ["", "u", "us", "user:", "Authorization: Basic "])
def test_base64_of_a_longer_text_holding_the_secret_is_masked(prefix: str) -> None:
    # `echo "user:$TOKEN" | base64`: the encoding of the secret's bytes depends on where they sit
    # in the 3-byte groups; each alignment is masked.
    for suffix in ("", "\n", "xyz"):
        encoded = base64.b64encode(f"{prefix}{SECRET}{suffix}".encode()).decode()
        masked = mask(encoded, [SECRET])
        assert MASK in masked
        # What is left is at most the groups shared with the prefix/suffix, never the middle.
        assert len(masked.replace(MASK, "")) <= len(encoded) - 4 * (len(SECRET) // 3 - 1)


def test_masking_walks_results_keys_included() -> None:
    result = {"out": [SECRET.upper(), {"k": SECRET[::-1]}], SECRET: 1, "n": 3}
    assert mask(result, [SECRET]) == {"out": [MASK, {"k": MASK}], MASK: 1, "n": 3}


def test_short_values_are_not_masked() -> None:
    assert mask("abc xyz", ["abc"]) == "abc xyz"


def test_derived_values_are_masked_as_a_whole() -> None:
    revealed = Revealed([SECRET])
    context = {"secrets": {"T": SECRET}, "params": {}}
    inputs = {
        "url": "https://api.example/x?token=${secrets.T}",
        "headers": {"Authorization": "Bearer ${secrets.T}", "Accept": "application/json"},
        "upper": "${upper(secrets.T)}",
        "reversed": "${secrets.T[::-1]}",
        "sliced": "${secrets.T[2:12]}",
        "plain": "unchanged",
    }
    resolved = resolve_secrets("transform", inputs, lambda: context, revealed)
    assert resolved["upper"] == SECRET.upper() and resolved["headers"]["Accept"] == "application/json"
    masked = mask(resolved, revealed)
    assert masked["url"] == masked["upper"] == masked["reversed"] == masked["sliced"] == MASK
    assert masked["headers"] == {"Authorization": MASK, "Accept": "application/json"}
    assert masked["plain"] == "unchanged"
    # A slice is not an encoding of the secret: it is masked because an expression derived it.
    assert mask(SECRET[2:12], [SECRET]) == SECRET[2:12]


def test_log_records_are_masked(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("rb-test-masking")
    handler = logging.StreamHandler()
    captured: list[str] = []
    handler.emit = lambda record: captured.append(record.getMessage())  # type: ignore[method-assign]
    handler.addFilter(MaskingFilter(lambda: [SECRET]))
    logger.addHandler(handler)
    try:
        logger.warning("GET %s", f"https://x/?t={quote(SECRET, safe='')}")
    finally:
        logger.removeHandler(handler)
    assert captured == ["GET https://x/?t=***"]


def test_directory_provider_reads_one_file_per_secret(tmp_path: Path) -> None:
    (tmp_path / "API_TOKEN").write_text("from-file\n")
    (tmp_path / "RAW").write_bytes(b"no-newline")
    (tmp_path / "..data").mkdir()  # Kubernetes' own entries
    (tmp_path / ".hidden").write_text("x")
    (tmp_path / "not a name").write_text("x")
    assert DirSecrets(tmp_path).load() == {"API_TOKEN": "from-file", "RAW": "no-newline"}
    assert DirSecrets(tmp_path / "missing").load() == {}


def test_resolver_first_source_wins_and_rereads_after_its_ttl() -> None:
    store = StaticSecrets({"A": "from-store", "B": "only-store"})
    resolver = SecretResolver([StaticSecrets({"A": "from-env"}), store], ttl=0)
    assert resolver.values() == {"A": "from-env", "B": "only-store"}
    store.values["C"] = "new"
    assert resolver.values()["C"] == "new"


def test_fernet_keyring_rotation_and_name_binding() -> None:
    old, new = generate_key(), generate_key()
    token = seal(keyring(old), "DB", "pa55word")
    assert "pa55word" not in token
    both = keyring(f"{new}, {old}")
    assert unseal(both, "DB", token) == "pa55word"
    rotated = both.rotate(token.encode()).decode()
    assert unseal(keyring(new), "DB", rotated) == "pa55word"
    with pytest.raises(MasterKeyError, match="cannot be decrypted"):
        unseal(keyring(new), "DB", token)
    with pytest.raises(MasterKeyError, match="another name"):
        unseal(keyring(new), "OTHER", rotated)
    with pytest.raises(MasterKeyError, match="not set"):
        keyring("")
    with pytest.raises(MasterKeyError, match="key #2 is not a Fernet key") as info:
        keyring(f"{new},not-a-key-at-all")
    assert "not-a-key-at-all" not in str(info.value)


def test_data_cannot_smuggle_a_secret_expression_into_a_step() -> None:
    # A parameter (or alert label, or output) holding `${secrets.X}` would be resolved by the
    # worker's second pass over the inputs: the step fails instead, before it is scheduled.
    runbook, _ = load_runbook_text("""
id: smuggle
name: Smuggle
parameters: {type: object, properties: {target: {type: string}}}
steps:
  - {id: t, type: transform, inputs: {sent: "x=${params.target}"}, outputs: {sent: $.sent}}
""")
    runner = Runner(
        InMemoryEventStore(),
        PluginExecutor(default_registry()),
        FakeClock("2025-01-01T00:00:00Z"),
        Settings(),
        secrets={"TOKEN": SECRET},
    )
    state = asyncio.run(runner.run(RunRequest(runbook=runbook, params={"target": "${secrets.TOKEN}"})))
    assert state.status == "FAILED"
    assert "reads secrets; data may not" in (state.steps["t"].error or "")
    assert SECRET not in str(state.steps["t"].outputs)
