"""Canonical JSON: one byte sequence per value, for digests, hashes and stable output."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import orjson

_ORJSON = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS
# Plain JSON only: datetimes and dataclasses go to `default` (which refuses them) instead of
# being written in orjson's own way; non-string keys are refused as well.
_PLAIN = orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


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


def _refuse(value: Any) -> Any:
    raise TypeError(f"not plain JSON: {type(value).__name__}")


def plain_canonical_bytes(value: Any) -> bytes:
    """`canonical_bytes` of a value made of plain JSON types only (dicts with string keys, lists,
    tuples, strings, 64-bit integers, floats, booleans, None, enums of those, UUIDs); TypeError for
    anything else (a datetime, bytes, a set, a model, a non-string key, a larger integer), whose
    JSON form is a serialiser's choice. For such values these are the bytes that a pydantic
    JSON-mode dump of the value gives to `canonical_bytes`, without the dump."""
    return orjson.dumps(value, option=_PLAIN, default=_refuse)


def digest(value: Any) -> str:
    return "sha256:" + hashlib.sha256(canonical_bytes(value)).hexdigest()
