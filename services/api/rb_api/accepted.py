"""Executions this API process accepted a moment ago (their trigger published), by id.

Right after its 202 an execution is on no stream yet: the executor has not taken its trigger,
so it has no event and no projection row. A long poll (`rb_api.long_poll`) for an id that is
known nowhere answers 404 at once, except for one in here: that one is waited for like any
running execution. Per process and bounded (the oldest go first); another API replica does not
know it, and answers the 404 a client polls again after.
"""

from __future__ import annotations

import time
from collections import OrderedDict

KEEP_SECONDS = 120.0  # an executor takes a trigger in milliseconds; minutes when far behind
MAX_KEPT = 10_000


class Accepted:
    def __init__(self, keep_seconds: float = KEEP_SECONDS, size: int = MAX_KEPT) -> None:
        self.keep_seconds = keep_seconds
        self.size = size
        self._at: OrderedDict[str, float] = OrderedDict()
        self._created: set[str] = set()  # of those, the ids whose execution this process created

    def add(self, execution_id: str, *, created: bool = True) -> None:
        """`created`: this request made the execution (False: an Idempotency-Key's earlier one,
        which may have ended long ago)."""
        self._at[execution_id] = time.monotonic()
        self._at.move_to_end(execution_id)
        if created:
            self._created.add(execution_id)
        else:
            self._created.discard(execution_id)
        while len(self._at) > self.size:
            self._created.discard(self._at.popitem(last=False)[0])

    def __contains__(self, execution_id: object) -> bool:
        at = self._at.get(execution_id) if isinstance(execution_id, str) else None
        return at is not None and time.monotonic() - at < self.keep_seconds

    def created_here(self, execution_id: str) -> bool:
        """Kept, and created by a request of this process (not an Idempotency-Key's replay)."""
        return execution_id in self._created and execution_id in self
