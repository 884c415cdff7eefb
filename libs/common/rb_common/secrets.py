"""Masking: a secret value never leaves a step unmasked."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

MASK = "***"
ENV_PREFIX = "RB_SECRET_"


def secrets_from_env(environ: Mapping[str, str]) -> dict[str, str]:
    """Step secrets of this process: RB_SECRET_<NAME>=value gives ${secrets.NAME}. They live
    with whoever runs steps and never travel in an event or a message."""
    return {k[len(ENV_PREFIX) :]: v for k, v in environ.items() if k.startswith(ENV_PREFIX)}


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
