"""API keys as the API last read them, for a moment: a request authenticated by a key it saw less
than `RB_AUTH_CACHE_SECONDS` ago does not read `api_keys` again (under load that read was the
most frequent query of the API, one per request).

What stays exact: expiry (`StoredKey.active` is checked on every use, against the clock), and
every change this API process makes to keys (creating or revoking one empties the cache at once).
What a cached entry may miss for up to `RB_AUTH_CACHE_SECONDS`: a revocation by another API process
or replica, or an edit of the table by hand. 0 turns the cache off. Only keys found active are
kept, by the SHA-256 of the key (never the key itself); unknown or refused credentials are looked
up every time.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from datetime import UTC, datetime
from threading import Lock

from rb_common.identity import hash_key
from rb_store.keys import StoredKey

# Keys kept at most (least recently used go first): far more than a deployment has in use.
MAX_KEYS = 1024


class KeyCache:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._entries: OrderedDict[str, tuple[float, StoredKey]] = OrderedDict()
        self._lock = Lock()
        self._generation = 0  # bumped by clear(): a lookup begun before it is not kept
        # Lookups in flight by key digest (rb_api.auth: concurrent requests share one); only
        # touched from the event loop.
        self.lookups: dict[tuple[str, int], asyncio.Future[StoredKey | None]] = {}  # (digest, generation)

    def get(self, credential: str) -> StoredKey | None:
        """The active key cached for `credential`, or None (not cached, stale or no longer active)."""
        if self.seconds <= 0:
            return None
        digest = hash_key(credential)
        now = time.monotonic()
        with self._lock:
            found = self._entries.get(digest)
            if found is None:
                return None
            stored_at, stored = found
            if now - stored_at >= self.seconds or not stored.active(datetime.now(UTC)):
                del self._entries[digest]
                return None
            self._entries.move_to_end(digest)
            return stored

    def generation(self) -> int:
        with self._lock:
            return self._generation

    def put(self, credential: str, stored: StoredKey, generation: int) -> None:
        """Keep what a lookup begun at `generation` found, unless the cache was cleared since."""
        if self.seconds <= 0:
            return
        with self._lock:
            if generation != self._generation:
                return
            digest = hash_key(credential)
            self._entries[digest] = (time.monotonic(), stored)
            self._entries.move_to_end(digest)
            while len(self._entries) > MAX_KEYS:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        """Forget every key (a key was created or revoked through this process)."""
        with self._lock:
            self._entries.clear()
            self._generation += 1
