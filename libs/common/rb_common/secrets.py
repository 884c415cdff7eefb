"""Masking: a secret value never leaves a step unmasked."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

MASK = "***"
ENV_PREFIX = "RB_SECRET_"
# RB_SECRET_KEY was rb's own key before it became RB_MASTER_KEY: never a step secret, so a stale
# deployment cannot hand it to steps as ${secrets.KEY}.
RENAMED = {"RB_SECRET_KEY": "RB_MASTER_KEY"}


def secrets_from_env(environ: Mapping[str, str]) -> dict[str, str]:
    """Step secrets of this process: RB_SECRET_<NAME>=value gives ${secrets.NAME}. They live
    with whoever runs steps and never travel in an event or a message."""
    return {
        k[len(ENV_PREFIX) :]: v for k, v in environ.items() if k.startswith(ENV_PREFIX) and k not in RENAMED
    }


def renamed_notices(environ: Mapping[str, str]) -> list[str]:
    """One line per set variable that was renamed, for services and the CLI to print at start."""
    return [
        f"{old} was renamed to {new}: set {new} instead ({old} is ignored and never given to steps)"
        for old, new in RENAMED.items()
        if old in environ
    ]


def mask(value: Any, secrets: Iterable[str]) -> Any:
    """`value` with every occurrence of any secret (of 4+ characters) replaced by ***."""
    needles = sorted((s for s in secrets if isinstance(s, str) and len(s) >= 4), key=len, reverse=True)
    if not needles:
        return value
    return _mask(value, needles)


def _mask(value: Any, needles: list[str]) -> Any:
    if isinstance(value, str):
        for needle in needles:
            if needle in value:
                value = value.replace(needle, MASK)
        return value
    if isinstance(value, list):
        return [_mask(v, needles) for v in value]
    if isinstance(value, dict):
        return {_mask(k, needles): _mask(v, needles) for k, v in value.items()}
    return value
