"""Canonical JSON: one byte sequence per value, for digests, hashes and stable output."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import orjson

_ORJSON = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS


def canonical_json(value: Any, *, indent: int | None = None) -> str:
    separators = (",", ": ") if indent else (",", ":")
    return json.dumps(
        value, sort_keys=True, ensure_ascii=False, separators=separators, indent=indent, default=str
    )


def canonical_bytes(value: Any) -> bytes:
    """The compact canonical form as UTF-8, for hashes and digests: orjson with sorted keys, an
    order of magnitude faster than the json module and the same bytes except for floats written
    with an exponent (`1e-7`, json: `1e-07`). json is the fallback for what orjson refuses
    (integers beyond 64 bits)."""
    try:
        return orjson.dumps(value, option=_ORJSON, default=str)
    except TypeError:
        return canonical_json(value).encode()


def digest(value: Any) -> str:
    return "sha256:" + hashlib.sha256(canonical_bytes(value)).hexdigest()
