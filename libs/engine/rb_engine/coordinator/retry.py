"""Backoff with jitter that is deterministic: the same execution always gets the same delays."""

from __future__ import annotations

import hashlib

from rb_common.model import RetryPolicy


def backoff_delay(policy: RetryPolicy, attempt: int, seed: str) -> float:
    """Delay before attempt `attempt + 1`; jitter comes from a hash, never from `random`."""
    if policy.backoff == "exponential":
        base = policy.initial_delay * (2 ** (attempt - 1))
    elif policy.backoff == "linear":
        base = policy.initial_delay * attempt
    else:
        base = policy.initial_delay
    base = min(base, policy.max_delay)
    if not policy.jitter:
        return base
    digest = hashlib.sha256(f"{seed}:{attempt}".encode()).digest()
    fraction = int.from_bytes(digest[:8], "big") / 2**64
    # "Equal jitter": half the delay is kept, so retries never bunch up at zero.
    return round(base / 2 + fraction * base / 2, 6)
