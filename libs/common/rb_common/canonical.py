"""Canonical JSON: one byte sequence per value, for digests, hashes and stable output."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(value: Any, *, indent: int | None = None) -> str:
    separators = (",", ": ") if indent else (",", ":")
    return json.dumps(
        value, sort_keys=True, ensure_ascii=False, separators=separators, indent=indent, default=str
    )


def digest(value: Any) -> str:
    return "sha256:" + hashlib.sha256(canonical_json(value).encode()).hexdigest()
