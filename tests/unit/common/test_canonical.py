"""The fast canonical encoding matches the json-module one it replaced (hashes of recordings made
before stay valid), except for exponent floats, and is deterministic."""

from __future__ import annotations

import pytest

from rb_common.canonical import canonical_bytes, canonical_json, digest

VALUES = [
    {"b": 1, "a": [1.5, 2, None, True], "é": "ü", "z": {"y": "x"}},
    {"n": 10**30, "m": -(2**70)},  # beyond orjson's 64-bit integers: the json fallback
    {"s": 'quote " and \\ and \n', "f": 0.1 + 0.2, "e": 12.5},
    [],
    "plain",
]


@pytest.mark.parametrize("value", VALUES)
def test_fast_and_reference_encodings_agree(value: object) -> None:
    assert canonical_bytes(value) == canonical_json(value).encode()


def test_digest_is_stable_and_sensitive() -> None:
    assert digest({"a": 1, "b": 2}) == digest({"b": 2, "a": 1})
    assert digest({"a": 1}) != digest({"a": 2})


def test_exponent_floats_are_deterministic() -> None:
    assert canonical_bytes({"e": 1e-7}) == canonical_bytes({"e": 1e-7}) == b'{"e":1e-7}'
